"""The prediction-log migrations: a log created before migrations existed upgrades in place on
SQLite and PostgreSQL without losing a row, through the command the migrate Job runs; the
migrations build exactly the tables the code declares (service/predlog.py, service/review/store.py);
an up-to-date log upgrades as a no-op."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from service.logdb import head_revision, main, upgrade
from service.predlog import PredictionLog, connect, make_engine, metadata, prediction_rows
from service.review.store import Filters, ReviewStore
from tests.conftest import ROOT, repo_env

# Verbatim the DDL that service/predlog.py and service/review/store.py ran at start before the
# migrations (git show eab22d8:service/predlog.py): the databases in the field look like this.
PRE_MIGRATION_DDL = {
    "sqlite": [
        """CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, position INTEGER NOT NULL,
    created_at TEXT NOT NULL, model_version TEXT NOT NULL, text TEXT,
    text_sha256 TEXT NOT NULL, label TEXT NOT NULL, scores TEXT NOT NULL,
    latency_ms REAL NOT NULL, shadow_label TEXT, shadow_model_version TEXT)""",
        """CREATE TABLE IF NOT EXISTS corrections (
    prediction_id INTEGER PRIMARY KEY REFERENCES predictions (id), label TEXT NOT NULL,
    action TEXT NOT NULL, reviewer TEXT NOT NULL, reviewed_at TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS label_reviews (
    row_id TEXT PRIMARY KEY, text TEXT NOT NULL, given_label TEXT NOT NULL, label TEXT NOT NULL,
    action TEXT NOT NULL, reviewer TEXT NOT NULL, reviewed_at TEXT NOT NULL)"""],
    "postgresql": [
        """CREATE TABLE IF NOT EXISTS predictions (
    id BIGSERIAL PRIMARY KEY, request_id TEXT NOT NULL, position INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, model_version TEXT NOT NULL, text TEXT,
    text_sha256 TEXT NOT NULL, label TEXT NOT NULL, scores JSONB NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL, shadow_label TEXT, shadow_model_version TEXT)""",
        """CREATE TABLE IF NOT EXISTS corrections (
    prediction_id BIGINT PRIMARY KEY REFERENCES predictions (id), label TEXT NOT NULL,
    action TEXT NOT NULL, reviewer TEXT NOT NULL, reviewed_at TIMESTAMPTZ NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS label_reviews (
    row_id TEXT PRIMARY KEY, text TEXT NOT NULL, given_label TEXT NOT NULL, label TEXT NOT NULL,
    action TEXT NOT NULL, reviewer TEXT NOT NULL, reviewed_at TIMESTAMPTZ NOT NULL)"""],
}
COMMON_DDL = [
    "CREATE INDEX IF NOT EXISTS predictions_request ON predictions (request_id, position)",
    "CREATE INDEX IF NOT EXISTS predictions_created ON predictions (created_at)",
    "CREATE TABLE IF NOT EXISTS revoked_sessions (session_id TEXT PRIMARY KEY, "
    "expires_at BIGINT NOT NULL)",
]
OLD_ROWS = 250


@pytest.fixture(params=["sqlite", "postgresql"])
def old_log(request, tmp_path) -> str:
    """A log as the pre-migration service left it: its tables, 250 predictions (some hashed,
    some shadowed, one request id repeated), a correction, a label review, a revoked session."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/old.db"
    else:
        url = request.getfixturevalue("postgres_url")
    backend = request.param
    mark = "?" if backend == "sqlite" else "%s"
    conn = connect(url)
    try:
        for statement in PRE_MIGRATION_DDL[backend] + COMMON_DDL:
            conn.execute(statement)
        insert = (f"INSERT INTO predictions (request_id, position, created_at, model_version, "
                  f"text, text_sha256, label, scores, latency_ms, shadow_label, "
                  f"shadow_model_version) VALUES ({', '.join([mark] * 11)})")
        rows = [(f"caller-{i // 2}", i % 2, f"2026-01-01T00:00:{i % 60:02d}.000000Z", "old-model",
                 None if i % 5 == 0 else f"old text {i}", f"{i:064x}",
                 "offensive" if i % 3 == 0 else "not-offensive",
                 '{"not-offensive": 0.4, "offensive": 0.6}', 3.5,
                 "offensive" if i % 7 == 0 else None, "shadow-old" if i % 7 == 0 else None)
                for i in range(OLD_ROWS)]
        conn.cursor().executemany(insert, rows)
        conn.execute(f"INSERT INTO corrections VALUES (1, 'offensive', 'fixed', 'alice', {mark})",
                     ("2026-01-02T00:00:00Z",))
        conn.execute(f"INSERT INTO label_reviews VALUES ('train-1', 'a text', 'offensive', "
                     f"'not-offensive', 'change', 'bob', {mark})", ("2026-01-02T00:00:00Z",))
        conn.execute("INSERT INTO revoked_sessions VALUES ('s1', 4102444800)")
        conn.commit()
    finally:
        conn.close()
    return url


def table(url: str, sql: str) -> list[tuple]:
    conn = connect(url)
    try:
        return [tuple(r) for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


def test_a_pre_migration_log_upgrades_without_losing_a_row(old_log):
    before = {name: table(old_log, f"SELECT * FROM {name} ORDER BY 1")
              for name in ("predictions", "corrections", "label_reviews", "revoked_sessions")}

    result = subprocess.run([sys.executable, "-m", "service.logdb", "--db-url", old_log,
                             "migrate"], cwd=ROOT, env=repo_env(ROOT), capture_output=True,
                            text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert f"schema none -> {head_revision()}" in result.stdout
    after = {name: table(old_log, f"SELECT * FROM {name} ORDER BY 1") for name in before}
    for name in ("corrections", "label_reviews", "revoked_sessions"):
        assert after[name] == before[name]
    assert len(after["predictions"]) == OLD_ROWS
    # Every old column unchanged; the caller's id copied beside the key; kept texts marked.
    assert [r[:12] for r in after["predictions"]] == before["predictions"]
    added = table(old_log, "SELECT request_id, client_request_id, text, text_kept "
                           "FROM predictions ORDER BY id")
    assert all(client == key for key, client, _, _ in added)
    assert all((kept == "all") == (text is not None) for _, _, text, kept in added)


def test_the_upgraded_log_takes_new_rows_and_serves_the_review_ui(old_log):
    main(["--db-url", old_log, "migrate"])
    log = PredictionLog(old_log).start()
    log.record(prediction_rows("new-key", ["new text"], [
        {"label": "offensive", "scores": {"not-offensive": 0.1, "offensive": 0.9},
         "model_version": "new-model"}], 2.0, "text", client_request_id="caller-0"))
    log.close()
    store = ReviewStore(old_log, ["not-offensive", "offensive"])
    try:
        assert store.counts() == {"total": OLD_ROWS + 1, "reviewed": 1, "unreviewed": OLD_ROWS,
                                  "fixed": 1, "confirmed": 0}
        assert table(old_log, "SELECT COUNT(*) FROM predictions WHERE client_request_id = "
                              "'caller-0'") == [(3,)]
        # The old rows read through the review UI's queries: the old review, filters, sorts.
        [old_review] = store.list_items(Filters(status="reviewed"))
        assert old_review["id"] == 1 and old_review["text"] is None  # row 0 kept only its hash
        assert old_review["review"]["reviewer"] == "alice"
        assert old_review["review"]["reviewed_at"].startswith("2026-01-02T00:00:00")
        assert old_review["scores"] == {"not-offensive": 0.4, "offensive": 0.6}
        assert len(store.list_items(Filters(model_version="old-model"), limit=500)) == OLD_ROWS
        assert len(store.list_items(Filters(disagree=True), limit=500)) == 24
        assert [d["id"] for d in store.label_decisions()] == ["train-1"]
        assert store.is_revoked("s1")
        # ... and written: a review replacing the old one, a new one, undo, a new decision.
        assert store.save_corrections(store.check_corrections(
            [{"id": 1, "label": "not-offensive"}, {"id": 2, "label": "not-offensive"}]),
            "carol") == 2
        assert store.undo([2]) == 1
        [review] = store.reviewed_items()
        assert (review["id"], review["label"], review["action"], review["reviewer"]) == (
            1, "not-offensive", "fixed", "carol")  # logged as offensive
        store.save_label_decisions([({"id": "train-1", "text": "a text", "label": "offensive"},
                                     "offensive")], "dave")
        assert [(d["id"], d["action"], d["reviewer"]) for d in store.label_decisions()] == [
            ("train-1", "kept", "dave")]
        store.revoke_session("s2", 4102444800)
        assert store.is_revoked("s2") and not store.is_revoked("s3")
    finally:
        store.close()


def differences(url: str, primary_keys_may_be_nullable: bool = False) -> list:
    """What Alembic's autogenerate would change to make the database at `url` match the tables
    the code declares (predictions, corrections, label_reviews, revoked_sessions)."""

    def same_affinity(_context, _inspected, _declared, inspected, declared):
        # SQLite has one floating-point storage class: REAL and FLOAT(53) are the same column.
        if isinstance(inspected, sa.Float) and isinstance(declared, sa.Float):
            return False
        return None  # Alembic's own comparison

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": same_affinity})
            found = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    changes = [change for group in found
               for change in (group if isinstance(group, list) else [group])]
    if primary_keys_may_be_nullable:
        # The pre-migration SQLite DDL said `PRIMARY KEY` without `NOT NULL`; SQLite then
        # allows a NULL key. The code never writes one; the baseline adopts those tables as is.
        changes = [c for c in changes if not (c[0] == "modify_nullable" and
                                              metadata.tables[c[2]].c[c[3]].primary_key)]
    return changes


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/new.db"
    return request.getfixturevalue("postgres_url")


def test_the_migrations_build_exactly_the_tables_the_code_declares(empty_url):
    assert sorted(metadata.tables) == ["corrections", "label_reviews", "predictions",
                                       "revoked_sessions"]
    assert upgrade(empty_url) == (None, head_revision())

    assert differences(empty_url) == []


def test_a_pre_migration_log_upgrades_to_the_tables_the_code_declares(old_log):
    upgrade(old_log)

    assert differences(old_log, primary_keys_may_be_nullable=True) == []


def test_an_up_to_date_log_upgrades_as_a_no_op(empty_url):
    upgrade(empty_url)
    log = PredictionLog(empty_url).start()
    log.record(prediction_rows("key", ["a text", "another"], [
        {"label": "offensive", "scores": {"not-offensive": 0.2, "offensive": 0.8},
         "model_version": "m"}] * 2, 2.0, "text"))
    log.close()
    store = ReviewStore(empty_url, ["not-offensive", "offensive"])
    try:
        store.save_corrections([(1, "not-offensive")], "alice")
        store.save_label_decisions([({"id": "t-1", "text": "x", "label": "offensive"},
                                     "not-offensive")], "bob")
        store.revoke_session("s1", 4102444800)
    finally:
        store.close()
    names = ("predictions", "corrections", "label_reviews", "revoked_sessions")
    before = {name: table(empty_url, f"SELECT * FROM {name} ORDER BY 1") for name in names}

    result = subprocess.run([sys.executable, "-m", "service.logdb", "--db-url", empty_url,
                             "migrate"], cwd=ROOT, env=repo_env(ROOT), capture_output=True,
                            text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert f"schema {head_revision()} -> {head_revision()}" in result.stdout
    assert {name: table(empty_url, f"SELECT * FROM {name} ORDER BY 1") for name in names} == before
    assert [len(rows) for rows in before.values()] == [2, 1, 1, 1]
    assert differences(empty_url) == []


def test_migrate_is_idempotent_and_check_passes_after_it(old_log, capsys):
    assert main(["--db-url", old_log, "check"]) == 1
    assert "no migration history" in capsys.readouterr().err
    assert main(["--db-url", old_log, "migrate"]) == 0
    assert main(["--db-url", old_log, "migrate"]) == 0
    assert main(["--db-url", old_log, "check"]) == 0
    assert table(old_log, "SELECT COUNT(*) FROM predictions") == [(OLD_ROWS,)]


def test_migrate_names_an_unreachable_database_and_fails(capsys):
    assert main(["--db-url", "postgresql://u@127.0.0.1:1/none", "migrate"]) == 1
    assert "cannot reach the prediction log at 127.0.0.1:1/none" in capsys.readouterr().err


def test_purge_text_refuses_a_non_positive_period(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/log.db"
    main(["--db-url", url, "migrate"])
    assert main(["--db-url", url, "purge-text", "--older-than-days", "0"]) == 1
    assert "--older-than-days 0: must be > 0" in capsys.readouterr().err
