"""The image pin as git changes: set-image, the PR diff, promote, abort and rollback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.deploy.kustomize import render
from pipelines.deploy.pins import (
    PinError,
    change_pin,
    diff_markdown,
    overlay_dir,
    pin_findings,
    read_pin,
    set_image,
)
from tests.k8s.conftest import REPO

OLD = "transformer-4d4a25b1-0219b906"
NEW = "transformer-9a8b7c6d-0219b906"
DIGEST = "sha256:" + "ab" * 32


def kustomization(root: Path, env: str) -> Path:
    return overlay_dir(env, root) / "kustomization.yaml"


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True)
            if a != b]


def test_set_image_changes_only_the_tag_line_and_keeps_comments(k8s_copy):
    path = kustomization(k8s_copy, "production")
    before_text = path.read_text()
    before, after = set_image("production", tag=NEW, root=k8s_copy)
    assert (before.tag, after.tag) == (OLD, NEW)
    assert changed_lines(before_text, path.read_text()) == [
        (f"    newTag: {OLD}", f"    newTag: {NEW}")]
    assert read_pin("staging", k8s_copy).tag == OLD


def test_set_image_by_digest_replaces_the_tag(k8s_copy):
    set_image("staging", digest=DIGEST, root=k8s_copy)
    pin = read_pin("staging", k8s_copy)
    assert (pin.tag, pin.digest) == (None, DIGEST)
    rendered = render(overlay_dir("staging", k8s_copy))
    assert f"image: ghcr.io/example-org/moderation-service@{DIGEST}" in rendered


def test_numeric_tag_stays_a_string(k8s_copy):
    set_image("production", tag="20260101", root=k8s_copy)
    assert read_pin("production", k8s_copy).tag == "20260101"
    assert "moderation-service:20260101\n" in render(overlay_dir("production", k8s_copy))


@pytest.mark.parametrize(("tag", "digest", "message"), [
    ("latest", None, "latest is never allowed"),
    ("bad tag!", None, "not a concrete image tag"),
    (None, "sha256:1234", "not sha256:<64 hex characters>"),
    (None, None, "exactly one of a tag or a digest"),
    (NEW, DIGEST, "exactly one of a tag or a digest"),
])
def test_bad_pin_values_are_refused_and_nothing_is_written(k8s_copy, tag, digest, message):
    path = kustomization(k8s_copy, "production")
    before = path.read_text()
    with pytest.raises(PinError, match=message):
        set_image("production", tag=tag, digest=digest, root=k8s_copy)
    assert path.read_text() == before


def test_unknown_environment_lists_the_known_ones(k8s_copy):
    with pytest.raises(PinError, match=r"no overlay 'prod'.*\['production', 'staging'\]"):
        read_pin("prod", k8s_copy)


def test_promotion_diff_shows_exactly_the_image_change(k8s_repo):
    set_image("production", tag=NEW, root=k8s_repo)
    text = diff_markdown("production", "HEAD", k8s_repo)
    assert (f"Image pin: `ghcr.io/example-org/moderation-service:{OLD}` → "
            f"`ghcr.io/example-org/moderation-service:{NEW}`") in text
    # The one pin covers the serving pods and the migration Job that runs before them.
    assert "Changed resources: `Deployment/moderation`, `Job/moderation-migrate`" in text
    diff = text.split("```diff\n")[1].split("```")[0].splitlines()
    edits = [line for line in diff if line[:1] in "+-" and line[:3] not in ("---", "+++")]
    assert edits == 2 * [f"-        image: ghcr.io/example-org/moderation-service:{OLD}",
                         f"+        image: ghcr.io/example-org/moderation-service:{NEW}"]


def test_diff_without_changes_says_so(k8s_repo):
    text = diff_markdown("staging", "HEAD", k8s_repo)
    assert "Image pin unchanged" in text and "The rendered manifests are identical." in text


def test_promote_commits_only_the_overlay(k8s_repo):
    change = change_pin("production", "promote", digest=DIGEST, commit=True, root=k8s_repo)
    assert git(k8s_repo, "rev-parse", "HEAD").strip() == change.commit
    assert git(k8s_repo, "show", "--name-only", "--format=", "HEAD").split() == [
        "k8s/overlays/production/kustomization.yaml"]
    message = git(k8s_repo, "log", "-1", "--format=%B")
    assert message.startswith(f"deploy(production): promote "
                              f"ghcr.io/example-org/moderation-service@{DIGEST}")
    assert "Deploy-Action: promote" in message


def test_rollback_reverts_the_pin_and_the_rendered_manifests(k8s_repo):
    before = render(overlay_dir("staging", k8s_repo))
    change_pin("staging", "promote", tag=NEW, commit=True, root=k8s_repo)
    assert render(overlay_dir("staging", k8s_repo)) != before
    change = change_pin("staging", "rollback", commit=True, root=k8s_repo)
    assert (change.before.tag, change.after.tag) == (NEW, OLD)
    assert render(overlay_dir("staging", k8s_repo)) == before
    assert "Deploy-Action: rollback" in git(k8s_repo, "log", "-1", "--format=%B")


def test_abort_during_a_canary_returns_to_the_stable_pin(k8s_repo):
    change_pin("staging", "promote", tag=NEW, commit=True, root=k8s_repo)
    change = change_pin("staging", "abort", root=k8s_repo)
    assert change.after.tag == OLD and change.commit is None
    assert read_pin("staging", k8s_repo).tag == OLD
    assert "abort the canary of" in change.message


def test_rollback_without_an_earlier_pin_says_what_to_do(k8s_repo):
    with pytest.raises(PinError, match="no earlier pin .* pass --tag or --digest"):
        change_pin("production", "rollback", root=k8s_repo)


def test_promote_to_the_current_pin_is_refused(k8s_repo):
    with pytest.raises(PinError, match="already pinned"):
        change_pin("production", "promote", tag=OLD, root=k8s_repo)


def run_cli(root: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines", "deploy", *args], cwd=root,
                          capture_output=True, text=True, timeout=120,
                          env={**env, "PYTHONPATH": str(REPO)})


def test_cli_promote_then_rollback(k8s_repo, git_env):
    proc = run_cli(k8s_repo, git_env, "promote", "staging", "--tag", NEW, "--commit")
    assert proc.returncode == 0, proc.stderr
    assert "committed" in proc.stdout
    assert run_cli(k8s_repo, git_env, "pin", "staging").stdout.strip().endswith(NEW)
    proc = run_cli(k8s_repo, git_env, "diff", "staging", "--against", "HEAD~1",
                   "--out", "reports/deploy-diff.md")
    assert proc.returncode == 0, proc.stderr
    assert f"+        image: ghcr.io/example-org/moderation-service:{NEW}" in (
        k8s_repo / "reports/deploy-diff.md").read_text()
    proc = run_cli(k8s_repo, git_env, "rollback", "staging", "--commit")
    assert proc.returncode == 0, proc.stderr
    assert read_pin("staging", k8s_repo).tag == OLD


# ---------------------------------------------------------------------------------------------
# Production is pinned by digest


def test_production_promote_by_tag_is_refused_and_names_the_digest_to_use(k8s_repo):
    path = kustomization(k8s_repo, "production")
    before = path.read_text()
    with pytest.raises(PinError, match=r"overlay 'production' is pinned by digest, not by tag "
                                       r"'transformer-9a8b.*--image-facts reports/image/facts"):
        change_pin("production", "promote", tag=NEW, root=k8s_repo)
    assert path.read_text() == before


def test_cli_promotes_production_to_the_digest_the_image_step_recorded(k8s_repo, git_env):
    facts = k8s_repo / "reports/image/facts.json"
    facts.parent.mkdir(parents=True)
    facts.write_text(json.dumps({"reference": f"ghcr.io/acme/moderation-service:{NEW}",
                                 "digest": DIGEST, "bento": f"moderation:{NEW}"}))
    proc = run_cli(k8s_repo, git_env, "promote", "production", "--image-facts",
                   "reports/image/facts.json", "--commit")
    assert proc.returncode == 0, proc.stderr
    assert read_pin("production", k8s_repo).reference == \
        f"ghcr.io/acme/moderation-service@{DIGEST}"
    assert f"image: ghcr.io/acme/moderation-service@{DIGEST}" in render(
        overlay_dir("production", k8s_repo))
    # back to the template's placeholder tag: refused, there is no digest to return to
    proc = run_cli(k8s_repo, git_env, "rollback", "production")
    assert proc.returncode == 1
    assert "overlay 'production' is pinned by digest, not by tag 'transformer-4d4a" in proc.stderr


def test_cli_promote_without_recorded_facts_names_the_image_step(k8s_repo, git_env):
    proc = run_cli(k8s_repo, git_env, "promote", "production", "--image-facts", "missing.json")
    assert proc.returncode == 1
    assert "missing.json not found: the image step writes it after its push" in proc.stderr


def pin_errors(root: Path) -> list[str]:
    return [str(f) for f in pin_findings(root)]


def test_validation_accepts_the_template_placeholder_until_a_digest_was_pinned(k8s_repo):
    assert pin_errors(k8s_repo) == []
    change_pin("production", "promote", digest=DIGEST, commit=True, root=k8s_repo)
    assert pin_errors(k8s_repo) == []
    set_image("production", tag=OLD, root=k8s_repo)  # the placeholder again, by hand
    assert pin_errors(k8s_repo) == [
        f"production: kustomization.yaml images: pin ghcr.io/example-org/moderation-service:{OLD}"
        " is the template's placeholder, but this overlay has been pinned by digest before: pin"
        " the digest the image step recorded: `python -m pipelines deploy promote production "
        "--image-facts reports/image/facts.json` or `--digest sha256:...`"]


def test_validation_refuses_a_production_tag_pin_but_not_a_staging_one(k8s_copy):
    set_image("production", tag=NEW, root=k8s_copy)
    set_image("staging", tag=NEW, root=k8s_copy)
    errors = pin_errors(k8s_copy)
    assert len(errors) == 1
    assert errors[0].startswith(f"production: kustomization.yaml images: pin "
                                f"ghcr.io/example-org/moderation-service:{NEW} is a tag; "
                                "production is pinned by digest")


def test_cli_refuses_latest_with_a_named_error(k8s_repo, git_env):
    path = kustomization(k8s_repo, "staging")
    before = path.read_text()
    proc = run_cli(k8s_repo, git_env, "set-image", "staging", "--tag", "latest")
    assert proc.returncode == 1
    assert "error: tag 'latest' is not a concrete image tag" in proc.stderr
    assert path.read_text() == before
    assert os.path.exists(path)
