"""The PR body's plots render on github.com, private repositories included: on Actions each
image is the github.com URL of the file on the promotion branch, and the promotion commit
carries exactly those files; elsewhere the links stay relative to the report folder."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt

from pipelines.analysis.pr_body import plot_lines
from pipelines.release.retrain import RetrainError, pr_body_images

OUT = Path("reports/compare")
PLOTS = {"confusion_production": "reports/compare/confusion_production.png",
         "confusion_candidate": "reports/compare/confusion_candidate.png",
         "pr_curves": "reports/compare/pr_curves.png"}
ACTIONS = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/moderation",
           "GITHUB_REF_NAME": "data/more-rows"}


def image_sources(lines: list[str]) -> list[str]:
    """The src of every image, as a markdown renderer (and GitHub) reads the lines."""
    tokens = MarkdownIt("commonmark").parse("\n".join(lines))
    return [child.attrs["src"] for token in tokens if token.type == "inline"
            for child in token.children if child.type == "image"]


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """A working directory laid out as the compare stage leaves it (DVC runs at the root)."""
    monkeypatch.chdir(tmp_path)
    OUT.mkdir(parents=True)
    for path in PLOTS.values():
        Path(path).write_bytes(b"\x89PNG")
    (OUT / "comparison.json").write_text(json.dumps({"plots": PLOTS}))
    return tmp_path


def test_on_actions_each_image_is_the_promotion_branch_file_on_github(workspace, monkeypatch):
    for key, value in ACTIONS.items():
        monkeypatch.setenv(key, value)
    assert image_sources(plot_lines(PLOTS, OUT)) == [
        f"https://github.com/acme/moderation/blob/promote/data/more-rows/{path}?raw=true"
        for path in PLOTS.values()]


def test_the_promotion_commit_carries_every_image_the_body_shows(workspace, monkeypatch):
    for key, value in ACTIONS.items():
        monkeypatch.setenv(key, value)
    prefix = "/acme/moderation/blob/promote/data/more-rows/"
    linked = sorted(unquote(urlsplit(src).path).removeprefix(prefix)
                    for src in image_sources(plot_lines(PLOTS, OUT)))
    assert linked == pr_body_images() == sorted(PLOTS.values())
    assert all((workspace / path).is_file() for path in linked)


def test_off_actions_the_images_stay_relative_to_the_report_folder(workspace, monkeypatch):
    for key in ACTIONS:
        monkeypatch.delenv(key, raising=False)
    assert image_sources(plot_lines(PLOTS, OUT)) == [
        "confusion_production.png", "confusion_candidate.png", "pr_curves.png"]


def test_an_explicit_link_base_wins_over_the_promotion_branch(workspace, monkeypatch):
    for key, value in ACTIONS.items():
        monkeypatch.setenv(key, value)
    assert image_sources(plot_lines(PLOTS, OUT, "https://reports.example/run-7/")) == [
        f"https://reports.example/run-7/{Path(p).name}" for p in PLOTS.values()]


def test_branch_and_server_from_the_environment_are_url_encoded(workspace, monkeypatch):
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://ghe.example.com/")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/moderation")
    monkeypatch.setenv("GITHUB_REF_NAME", "data/#7 more?rows")
    (src,) = image_sources(plot_lines({"pr_curves": PLOTS["pr_curves"]}, OUT))
    assert src == ("https://ghe.example.com/acme/moderation/blob/promote/data/%237%20more%3Frows/"
                   "reports/compare/pr_curves.png?raw=true")


def test_a_plot_outside_the_working_directory_keeps_a_relative_link(workspace, tmp_path_factory,
                                                                    monkeypatch):
    for key, value in ACTIONS.items():
        monkeypatch.setenv(key, value)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    plot = str(elsewhere / "pr_curves.png")
    assert image_sources(plot_lines({"pr_curves": plot}, elsewhere)) == ["pr_curves.png"]


def test_propose_without_the_comparison_names_the_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RetrainError, match="reports/compare/comparison.json not found"):
        pr_body_images()
