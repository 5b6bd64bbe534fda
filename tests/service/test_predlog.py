"""The prediction log on both backends: off-path writes, hashing, drops, flush, the server-side
log key, buffering through a database outage, the schema check at start, text retention."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from service.logdb import SchemaError, upgrade
from service.predlog import (
    DatabaseURLError,
    PredictionLog,
    backend_of,
    connect,
    create_schema,
    make_engine,
    prediction_rows,
    predictions,
    purge_texts,
)
from tests.conftest import wait_until

PREDS = [{"label": "offensive", "scores": {"not-offensive": 0.2, "offensive": 0.8},
          "model_version": "m1"},
         {"label": "not-offensive", "scores": {"not-offensive": 0.9, "offensive": 0.1},
          "model_version": "m1"}]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A migrated, empty log (as the migrate Job leaves it) on SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/log.db"
    else:
        url = request.getfixturevalue("postgres_url")
    create_schema(url)
    return url


def fetch(url: str, sql: str) -> list[tuple]:
    conn = connect(url)
    try:
        return list(conn.execute(sql).fetchall())
    finally:
        conn.close()


def test_logged_rows_are_in_the_database_after_close(db_url):
    written = []
    log = PredictionLog(db_url, on_written=written.append).start()
    for i in range(20):
        assert log.record(prediction_rows(f"req{i}", ["you idiot", "nice day"], PREDS, 12.5,
                                          "text", client_request_id=f"caller{i}"))
    log.close()
    rows = fetch(db_url, "SELECT request_id, position, model_version, text, label, scores, "
                         "latency_ms, client_request_id, text_kept FROM predictions ORDER BY id")
    assert len(rows) == 40 and sum(written) == 40
    assert rows[0][:5] == ("req0", 0, "m1", "you idiot", "offensive")
    scores = rows[0][5] if isinstance(rows[0][5], dict) else json.loads(rows[0][5])
    assert scores == {"not-offensive": 0.2, "offensive": 0.8}
    assert rows[0][6] == 12.5
    assert rows[0][7:] == ("caller0", "all")


def test_hash_mode_stores_only_the_sha256_of_the_text(db_url):
    log = PredictionLog(db_url).start()
    log.record(prediction_rows("r", ["secret text", "x"], PREDS, 1.0, "hash"))
    log.close()
    text, digest, kept = fetch(db_url, "SELECT text, text_sha256, text_kept FROM predictions "
                                       "WHERE position = 0")[0]
    assert text is None and kept is None
    assert digest == hashlib.sha256(b"secret text").hexdigest()


def test_sqlite_times_keep_the_iso_text_the_review_ui_compares(tmp_path):
    url = f"sqlite:///{tmp_path}/log.db"
    create_schema(url)
    log = PredictionLog(url).start()
    log.record(prediction_rows("r", ["a"], PREDS[:1], 1.0, "text"))
    log.close()
    (created,) = fetch(url, "SELECT created_at FROM predictions")[0]
    assert datetime.strptime(created, "%Y-%m-%dT%H:%M:%S.%fZ")


def test_shadow_labels_update_the_logged_rows(db_url):
    log = PredictionLog(db_url).start()
    log.record(prediction_rows("r1", ["a", "b"], PREDS, 1.0, "text"))
    log.record_shadow("r1", ["not-offensive", "not-offensive"], "shadow-v2")
    log.close()
    rows = fetch(db_url, "SELECT position, label, shadow_label, shadow_model_version "
                         "FROM predictions ORDER BY position")
    assert rows == [(0, "offensive", "not-offensive", "shadow-v2"),
                    (1, "not-offensive", "not-offensive", "shadow-v2")]


def test_create_schema_is_idempotent(db_url):
    create_schema(db_url)
    create_schema(db_url)
    assert fetch(db_url, "SELECT COUNT(*) FROM predictions") == [(0,)]


def test_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    dropped = []
    log = PredictionLog(f"sqlite:///{tmp_path}/log.db", max_queue=1, on_dropped=dropped.append)
    # Not started: nothing drains the queue, so the second record must be refused at once.
    assert log.record(prediction_rows("a", ["x"], PREDS[:1], 1.0, "text"))
    assert not log.record(prediction_rows("b", ["x", "y"], PREDS, 1.0, "text"))
    assert dropped == [2]


def test_sqlite_log_uses_wal_journal(tmp_path):
    url = f"sqlite:///{tmp_path}/log.db"
    create_schema(url)
    assert fetch(url, "PRAGMA journal_mode") == [("wal",)]


def test_unknown_database_url_is_rejected_with_the_accepted_forms():
    with pytest.raises(DatabaseURLError, match="sqlite:///PATH or postgresql://"):
        backend_of("mysql://root@localhost/db")


# --- the database goes away and comes back -------------------------------------------------

def test_rows_logged_while_postgres_is_down_are_written_once_it_is_back(postgres_cluster):
    url = postgres_cluster.new_database()
    create_schema(url)
    health, dropped = [], []
    log = PredictionLog(url, on_health=health.append, on_dropped=dropped.append,
                        retry_max_s=0.5).start()
    try:
        log.record(prediction_rows("before", ["a"], PREDS[:1], 1.0, "text"))
        assert wait_until(lambda: log.healthy, timeout=20)
        postgres_cluster.stop()
        for i in range(30):
            assert log.record(prediction_rows(f"during{i}", ["b", "c"], PREDS, 1.0, "text"))
        assert wait_until(lambda: log.healthy is False, timeout=20)
        postgres_cluster.start()
        assert wait_until(lambda: log.healthy, timeout=30)
    finally:
        log.close()
    assert health[:3] == [True, False, True]
    assert dropped == []
    assert fetch(url, "SELECT COUNT(*) FROM predictions") == [(61,)]


def test_a_full_buffer_during_an_outage_drops_and_counts_the_excess(postgres_cluster):
    url = postgres_cluster.new_database()
    create_schema(url)
    postgres_cluster.stop()
    dropped = []
    log = PredictionLog(url, max_queue=5, on_dropped=dropped.append, retry_max_s=0.5).start()
    try:
        for i in range(5):  # the first is taken by the writer as its pending batch
            log.record(prediction_rows(f"r{i}", ["a"], PREDS[:1], 1.0, "text"))
        assert wait_until(lambda: log.healthy is False, timeout=20)
        accepted = sum(log.record(prediction_rows(f"s{i}", ["a"], PREDS[:1], 1.0, "text"))
                       for i in range(20))
        postgres_cluster.start()
        assert wait_until(lambda: log.healthy, timeout=30)
    finally:
        log.close()
    # The writer holds its batch and the queue holds 5 requests: the rest is counted, not kept.
    assert accepted <= 5 and sum(dropped) == 20 - accepted
    assert fetch(url, "SELECT COUNT(*) FROM predictions") == [(5 + accepted,)]


def test_start_with_the_database_down_neither_fails_nor_loses_rows(postgres_cluster):
    url = postgres_cluster.new_database()
    create_schema(url)
    postgres_cluster.stop()
    log = PredictionLog(url, retry_max_s=0.5).start()  # a crashloop would start here
    try:
        log.record(prediction_rows("r", ["a", "b"], PREDS, 1.0, "text"))
        assert wait_until(lambda: log.healthy is False, timeout=20)
        postgres_cluster.start()
        assert wait_until(lambda: log.healthy, timeout=30)
    finally:
        log.close()
    assert fetch(url, "SELECT COUNT(*) FROM predictions") == [(2,)]


def test_close_with_the_database_down_counts_the_unwritten_rows_as_dropped(postgres_cluster):
    url = postgres_cluster.new_database()
    create_schema(url)
    postgres_cluster.stop()
    dropped = []
    log = PredictionLog(url, on_dropped=dropped.append, retry_max_s=0.5).start()
    log.record(prediction_rows("r", ["a", "b"], PREDS, 1.0, "text"))
    started = time.monotonic()
    log.close(timeout=2)
    assert time.monotonic() - started < 10
    assert sum(dropped) == 2


# --- schema revision ------------------------------------------------------------------------

def test_start_refuses_a_postgres_log_whose_schema_is_behind_with_the_command_to_run(
        postgres_url):
    upgrade(postgres_url, "0001")
    with pytest.raises(SchemaError, match=r"revision 0001; this service needs 0002: run "
                                          r"`python -m service\.logdb migrate`"):
        PredictionLog(postgres_url).start()


def test_start_refuses_an_unmigrated_postgres_log_and_creates_nothing(postgres_url):
    with pytest.raises(SchemaError, match="no migration history"):
        PredictionLog(postgres_url).start()
    assert fetch(postgres_url, "SELECT COUNT(*) FROM information_schema.tables "
                               "WHERE table_name = 'predictions'") == [(0,)]


def test_writer_waits_for_the_migration_then_writes_the_buffered_rows(postgres_cluster):
    url = postgres_cluster.new_database()
    upgrade(url, "0001")
    postgres_cluster.stop()  # down at start: the revision is checked only once it answers
    log = PredictionLog(url, retry_max_s=0.5).start()
    try:
        log.record(prediction_rows("r", ["a"], PREDS[:1], 1.0, "text"))
        postgres_cluster.start()
        time.sleep(2)
        assert log.healthy is False  # schema behind: waiting, nothing written
        upgrade(url)
        assert wait_until(lambda: log.healthy, timeout=30)
    finally:
        log.close()
    assert fetch(url, "SELECT request_id FROM predictions") == [("r",)]


def test_a_sqlite_log_is_migrated_by_the_service_that_owns_it(tmp_path):
    url = f"sqlite:///{tmp_path}/fresh.db"
    PredictionLog(url).start().close()
    assert fetch(url, "SELECT version_num FROM alembic_version") == [("0002",)]


# --- retention ------------------------------------------------------------------------------

def old_and_new_rows(url: str, days_old: float) -> None:
    rows = prediction_rows("old", ["old text"], PREDS[:1], 1.0, "text")
    rows[0]["created_at"] = datetime.now(UTC) - timedelta(days=days_old)
    rows += prediction_rows("new", ["new text"], PREDS[:1], 1.0, "text")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(predictions.insert(), rows)
    engine.dispose()


def test_purge_forgets_texts_past_retention_and_keeps_rows_and_digests(db_url):
    old_and_new_rows(db_url, days_old=31)
    engine = make_engine(db_url)
    assert purge_texts(engine, 30) == 1
    engine.dispose()
    rows = fetch(db_url, "SELECT request_id, text, text_kept, text_sha256 FROM predictions "
                         "ORDER BY id")
    assert [r[:3] for r in rows] == [("old", None, None), ("new", "new text", "all")]
    assert rows[0][3] == hashlib.sha256(b"old text").hexdigest()


def test_the_writer_applies_the_retention_period(tmp_path):
    url = f"sqlite:///{tmp_path}/log.db"
    create_schema(url)
    old_and_new_rows(url, days_old=3)
    log = PredictionLog(url, retention_days=2).start()
    try:
        assert wait_until(lambda: fetch(url, "SELECT COUNT(*) FROM predictions "
                                             "WHERE text IS NULL") == [(1,)], timeout=10)
    finally:
        log.close()


# --- the service: the log key, readiness through an outage ----------------------------------

def classify(base: str, texts: list[str], request_id: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if request_id:
        headers["X-Request-Id"] = request_id
    req = urllib.request.Request(base + "/classify", json.dumps({"texts": texts}).encode(),
                                 headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_a_repeated_caller_request_id_never_merges_requests_or_shadow_results(server):
    url = f"sqlite:///{server['db']}"
    classify(server["base"], ["have a lovely day friend"], request_id="same-id")
    classify(server["base"], ["you are a stupid idiot", "shut up moron"], request_id="same-id")

    def logged():
        rows = fetch(url, "SELECT request_id, position, text, label, shadow_label FROM "
                          "predictions WHERE client_request_id = 'same-id' ORDER BY id")
        return rows if len(rows) == 3 and all(r[4] is not None for r in rows) else None

    rows = wait_until(logged, timeout=60)
    assert rows, fetch(url, "SELECT * FROM predictions WHERE client_request_id = 'same-id'")
    first, second = rows[0][0], rows[1][0]
    assert first != second and rows[2][0] == second and "same-id" not in (first, second)
    assert [r[:3] for r in rows] == [(first, 0, "have a lovely day friend"),
                                     (second, 0, "you are a stupid idiot"),
                                     (second, 1, "shut up moron")]
    # One shadow label per row: the second request's shadow result did not land on the first.
    counts = fetch(url, "SELECT request_id, COUNT(*) FROM predictions WHERE client_request_id "
                        "= 'same-id' GROUP BY request_id ORDER BY MIN(id)")
    assert counts == [(first, 1), (second, 2)]


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def metric(base: str, name: str) -> float | None:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.slow
def test_readiness_and_every_answer_survive_a_database_outage(smoke_repo, postgres_cluster,
                                                              tmp_path):
    from tests.service.server import running_service

    url = postgres_cluster.new_database()
    create_schema(url)  # the migrate Job's step
    settings = {"model_dir": str(smoke_repo / "models/candidate"), "db_url": url}
    with running_service(smoke_repo, settings, tmp_path / "server.log") as (base, _):
        for i in range(5):
            classify(base, [f"before {i}"])
        assert wait_until(lambda: fetch(url, "SELECT COUNT(*) FROM predictions") == [(5,)],
                          timeout=30)
        postgres_cluster.stop()
        ready = []
        for i in range(10):
            classify(base, [f"during {i}", "second text"])
            ready.append(get_status(base + "/readyz"))
        assert ready == [200] * 10
        assert wait_until(lambda: metric(base, "moderation_log_database_up") == 0, timeout=30)
        postgres_cluster.start()
        assert wait_until(lambda: metric(base, "moderation_log_database_up") == 1, timeout=60)
        classify(base, ["after"])
        assert wait_until(lambda: fetch(url, "SELECT COUNT(*) FROM predictions") == [(26,)],
                          timeout=30), (tmp_path / "server.log").read_text()[-3000:]
        assert metric(base, "moderation_log_dropped_total") in (None, 0.0)


def test_an_empty_db_url_serves_without_a_prediction_log(tmp_path, monkeypatch):
    """The shadow pod's setting: nothing is opened or written, and shutdown has nothing to flush."""
    from types import SimpleNamespace

    from service.runtime import start_runtime
    from service.settings import load_settings

    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={"MODERATION_DB_URL": ""})
    runtime = start_runtime(settings, SimpleNamespace(labels=["not-offensive", "offensive"],
                                                      version="m1"))
    assert runtime.log is None
    runtime.after_response("caller-1", ["you idiot", "hello"], PREDS, latency_ms=3.0)
    runtime.record_shadow("log-1", ["offensive"], ["offensive"], "m0")
    runtime.close()
    assert list(tmp_path.iterdir()) == []
