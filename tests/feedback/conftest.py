"""Fixtures of the feedback loop: a prediction log on either backend and a running review UI."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from loadtests.serving import running_server
from service.predlog import PredictionLog, create_schema, prediction_rows
from tests.conftest import ROOT, free_port, repo_env

TOKEN = "review-token-for-tests"
LABELS = ["not-offensive", "offensive"]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """An empty prediction log on SQLite, then on a throwaway PostgreSQL database, migrated as
    the migrate Job leaves it (`python -m service.logdb migrate`)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/predictions.db"
    else:
        url = request.getfixturevalue("postgres_url")
    create_schema(url)
    return url


def prediction(score: float, version: str = "model-a") -> dict:
    """A logged prediction whose positive-class (offensive) score is `score`."""
    return {"label": LABELS[int(score >= 0.5)], "model_version": version,
            "scores": {LABELS[0]: round(1 - score, 4), LABELS[1]: score}}


def log_predictions(url: str, requests: list[list[tuple[str, float, str]]],
                    shadow: dict[int, list[str]] | None = None, log_text: str = "text") -> None:
    """Write requests of (text, offensive score, model version) through predlog's writer,
    with the shadow model's labels for request i when shadow[i] is given."""
    log = PredictionLog(url).start()
    for i, texts in enumerate(requests):
        assert log.record(prediction_rows(f"req-{i}", [t for t, _, _ in texts],
                                          [prediction(s, v) for _, s, v in texts], 5.0, log_text))
        if shadow and i in shadow:
            log.record_shadow(f"req-{i}", shadow[i], "shadow-model")
    log.close()


@contextmanager
def running_review_ui(db_url: str, log_file: Path, cwd: Path = ROOT, token: str = TOKEN,
                      params: Path | None = None) -> Iterator[str]:
    """`python -m pipelines review` on a free loopback port; yields its base URL."""
    port = free_port()
    env = repo_env(cwd, MODERATION_DB_URL=db_url, MODERATION_REVIEW_TOKEN=token)
    cmd = [sys.executable, "-m", "pipelines", "review", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--params", str(params)] if params else []
    with running_server(cmd, port, log_file, env=env, cwd=cwd, ready_path="/livez",
                        startup_timeout=30) as (base, _, _):
        yield base


@pytest.fixture
def review_ui(tmp_path) -> Callable[..., object]:
    """Factory: review_ui(db_url) starts the UI for one test (stopped at teardown)."""
    stack = []

    def start(db_url: str, cwd: Path = ROOT, params: Path | None = None) -> str:
        context = running_review_ui(db_url, tmp_path / f"review-{len(stack)}.log", cwd,
                                    params=params)
        stack.append(context)
        return context.__enter__()

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)
