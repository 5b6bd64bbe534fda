"""The service under test: one real server shared by the service tests of this package."""

from __future__ import annotations

import pytest

from tests.service.server import running_service

MAX_CHARS, MAX_TEXTS, MAX_BODY, MAX_CONCURRENCY = 200, 8, 32768, 3
BODY_TIMEOUT_S, HEADER_TIMEOUT_S, MAX_PENDING_CONNECTIONS = 2, 2, 16


@pytest.fixture(scope="package")
def server(smoke_repo, tmp_path_factory):
    """One service with small limits and the baseline model as local shadow."""
    work = tmp_path_factory.mktemp("service")
    settings = {"model_dir": str(smoke_repo / "models/candidate"),
                "shadow_model_dir": str(smoke_repo / "models/baseline"),
                "db_url": f"sqlite:///{work}/predictions.db", "max_chars": str(MAX_CHARS),
                "max_texts": str(MAX_TEXTS), "max_body_bytes": str(MAX_BODY),
                "max_concurrency": str(MAX_CONCURRENCY), "body_timeout_s": str(BODY_TIMEOUT_S),
                "header_timeout_s": str(HEADER_TIMEOUT_S),
                "max_pending_connections": str(MAX_PENDING_CONNECTIONS)}
    with running_service(smoke_repo, settings, work / "server.log") as (base, _):
        yield {"base": base, "db": work / "predictions.db"}
