"""Baseline: the tables as the service and the review UI created them before migrations.

Every statement is IF NOT EXISTS, so a log created by that code (no alembic_version table) is
adopted as it is, rows untouched, and an empty database gets the same tables.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SQLITE = (
    """CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    model_version TEXT NOT NULL,
    text TEXT,
    text_sha256 TEXT NOT NULL,
    label TEXT NOT NULL,
    scores TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    shadow_label TEXT,
    shadow_model_version TEXT
)""",
    """CREATE TABLE IF NOT EXISTS corrections (
    prediction_id INTEGER PRIMARY KEY REFERENCES predictions (id),
    label TEXT NOT NULL,
    action TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    reviewed_at TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS label_reviews (
    row_id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    given_label TEXT NOT NULL,
    label TEXT NOT NULL,
    action TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    reviewed_at TEXT NOT NULL
)""",
)
_POSTGRESQL = (
    """CREATE TABLE IF NOT EXISTS predictions (
    id BIGSERIAL PRIMARY KEY,
    request_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    model_version TEXT NOT NULL,
    text TEXT,
    text_sha256 TEXT NOT NULL,
    label TEXT NOT NULL,
    scores JSONB NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL,
    shadow_label TEXT,
    shadow_model_version TEXT
)""",
    """CREATE TABLE IF NOT EXISTS corrections (
    prediction_id BIGINT PRIMARY KEY REFERENCES predictions (id),
    label TEXT NOT NULL,
    action TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    reviewed_at TIMESTAMPTZ NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS label_reviews (
    row_id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    given_label TEXT NOT NULL,
    label TEXT NOT NULL,
    action TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    reviewed_at TIMESTAMPTZ NOT NULL
)""",
)
_BOTH = (
    "CREATE INDEX IF NOT EXISTS predictions_request ON predictions (request_id, position)",
    "CREATE INDEX IF NOT EXISTS predictions_created ON predictions (created_at)",
    # Review sessions ended by logout, until they would have expired anyway.
    """CREATE TABLE IF NOT EXISTS revoked_sessions (
    session_id TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
)""",
)


def upgrade() -> None:
    tables = _POSTGRESQL if op.get_context().dialect.name == "postgresql" else _SQLITE
    for statement in (*tables, *_BOTH):
        op.execute(statement)
