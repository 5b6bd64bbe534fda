"""The prediction log on both backends: schema, off-path writes, hashing, drops, flush."""

from __future__ import annotations

import hashlib
import json

import pytest

from service.predlog import (
    DatabaseURLError,
    PredictionLog,
    backend_of,
    connect,
    create_schema,
    prediction_rows,
)

PREDS = [{"label": "offensive", "scores": {"not-offensive": 0.2, "offensive": 0.8},
          "model_version": "m1"},
         {"label": "not-offensive", "scores": {"not-offensive": 0.9, "offensive": 0.1},
          "model_version": "m1"}]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/log.db"
    return request.getfixturevalue("postgres_url")


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
                                          "text"))
    log.close()
    rows = fetch(db_url, "SELECT request_id, position, model_version, text, label, scores, "
                         "latency_ms FROM predictions ORDER BY id")
    assert len(rows) == 40 and sum(written) == 40
    assert rows[0][:5] == ("req0", 0, "m1", "you idiot", "offensive")
    scores = rows[0][5] if isinstance(rows[0][5], dict) else json.loads(rows[0][5])
    assert scores == {"not-offensive": 0.2, "offensive": 0.8}
    assert rows[0][6] == 12.5


def test_hash_mode_stores_only_the_sha256_of_the_text(db_url):
    log = PredictionLog(db_url).start()
    log.record(prediction_rows("r", ["secret text", "x"], PREDS, 1.0, "hash"))
    log.close()
    text, digest = fetch(db_url, "SELECT text, text_sha256 FROM predictions WHERE position = 0")[0]
    assert text is None
    assert digest == hashlib.sha256(b"secret text").hexdigest()


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
