"""The prediction log in the cluster: migrations run as an Argo CD PreSync Job from the pinned
image, and the deployed settings keep the texts the feedback loop needs."""

from __future__ import annotations

import pytest

from pipelines.deploy.pins import overlays
from pipelines.deploy.policy import Manifests
from service.settings import load_settings
from tests.k8s.conftest import REPO

OVERLAYS = overlays(REPO)


def server_container(docs: list[dict]) -> dict:
    for doc in docs:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "moderation":
            return doc["spec"]["template"]["spec"]["containers"][0]
    raise AssertionError("no moderation Deployment rendered")


@pytest.mark.parametrize("target", OVERLAYS)
def test_migrations_run_as_a_presync_job_from_the_pinned_image(rendered, target):
    job = Manifests(rendered[target]).get("Job", "moderation-migrate")
    assert job is not None, f"{target}: no migrate Job"
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "service.logdb", "migrate"]
    server = server_container(rendered[target])
    assert container["image"] == server["image"]
    # The same database as the pods, from the same Secret.
    db_url = {e["name"]: e for e in container["env"]}["MODERATION_DB_URL"]
    assert db_url == {e["name"]: e for e in server["env"]}["MODERATION_DB_URL"]
    assert "secretKeyRef" in db_url["valueFrom"]


@pytest.mark.parametrize("target", OVERLAYS)
def test_deployed_settings_keep_sampled_redacted_texts_with_a_retention(rendered, target):
    config = next(d for d in rendered[target] if d["kind"] == "ConfigMap"
                  and d["metadata"]["name"].startswith("moderation-settings"))
    settings = load_settings(REPO / "params.yaml", config["data"])
    assert settings.log_text == "sample"
    assert 0 < settings.log_text_share <= 0.2 and settings.log_text_retention_days <= 90


def test_the_shadow_pod_keeps_no_prediction_log(rendered):
    shadow = Manifests(rendered["production+shadow"]).get("Deployment", "moderation-shadow")
    container = shadow["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in container["env"]}["MODERATION_DB_URL"] == ""
