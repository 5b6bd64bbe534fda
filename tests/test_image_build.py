"""The image build's inputs, without building: the package index handed to the build, the base
choice, and the facts section of the promotion PR body (tests/k8s/test_image.py builds it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipelines.release import image
from pipelines.runtime.errors import UsageError
from tests.conftest import ROOT


def test_the_build_gets_this_machines_package_index_read_only(tmp_path, monkeypatch):
    monkeypatch.setattr(image, "_pip_config", lambda: {
        "extra-index-url": f"file://{tmp_path}/pypi/simple https://mirror.example/simple",
        "find-links": str(tmp_path / "wheels"), "cert": "/etc/ssl/certs/ca-certificates.crt"})
    for folder in ("pypi/simple", "wheels"):
        (tmp_path / folder).mkdir(parents=True)
    mounts = image.package_index_mounts(tmp_path)
    # a local simple index links its files from its parent folder
    assert f"{tmp_path}/pypi:{tmp_path}/pypi:ro" in mounts
    assert f"{tmp_path}/wheels:{tmp_path}/wheels:ro" in mounts
    assert all(m.endswith(":ro") for m in mounts)
    uv = (tmp_path / "uv.toml").read_text()
    assert 'index-strategy = "unsafe-best-match"' in uv  # pip's choice across indexes
    assert "https://mirror.example/simple" in uv and "system-certs = true" in uv
    assert "find-links = " in (tmp_path / "pip.conf").read_text()


def test_a_python_without_a_known_debian_release_is_refused_by_name():
    with pytest.raises(UsageError, match=r"no Debian release known for Python 3\.9"):
        image.local_base("3.9")


def test_a_local_base_needs_podman(monkeypatch):
    monkeypatch.setattr(image, "bento_spec", lambda tag: {"tag": tag, "python_version": "3.11"})
    with pytest.raises(UsageError, match="needs --backend podman"):
        image.build("moderation:x", "example/moderation:x", backend="docker", base="local")


def test_an_unknown_bento_is_a_usage_error_naming_it(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipelines", "image", "build", "--bento",
                           "moderation:no-such-version"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "BENTOML_HOME": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    assert "no Bento moderation:no-such-version" in done.stderr and "make bento" in done.stderr


def test_the_facts_section_names_digest_size_model_and_packages():
    facts = image.ImageFacts("ghcr.io/o/moderation:v1-abc", "f00", "sha256:" + "a" * 64,
                             1_510_000_000, "moderation:v1-abc", "v1", 252.0, 143)
    text = facts.markdown()
    for expected in ("sha256:" + "a" * 64, "1510 MB", "`v1`", "143", "252 s"):
        assert expected in text


def test_the_promotion_body_carries_the_image_facts_when_the_image_step_wrote_them(
        tmp_path, monkeypatch):
    from pipelines.release import retrain

    monkeypatch.chdir(tmp_path)
    for path, text in ((retrain.PR_BODY, "## Comparison"), (retrain.LOADTEST_MARKDOWN, "## Load")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert "### Image" not in retrain.promotion_body("## Diff", "abc")
    image.write_facts(image.ImageFacts("r:v1", "f00", "sha256:" + "b" * 64, 10**9, "m:v1", "v1"),
                      retrain.IMAGE_FACTS)
    body = retrain.promotion_body("## Diff", "abc")
    assert body.index("## Load") < body.index("### Image") < body.index("## Diff")
    assert "sha256:" + "b" * 64 in body
