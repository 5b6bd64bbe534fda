"""Baseline: the tables as the service and the review UI created them before migrations.

Every table and index is created only if missing, so a log created by that code (no
alembic_version table) is adopted as it is, rows untouched, and an empty database gets the same
tables. The types are frozen here, not imported from the application's tables: each column is
the type the pre-migration DDL gave it on SQLite, with its PostgreSQL variant beside it.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.Text().with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
JSON = sa.Text().with_variant(postgresql.JSONB(), "postgresql")
DOUBLE = sa.REAL().with_variant(postgresql.DOUBLE_PRECISION(), "postgresql")


def _review_columns() -> list[sa.Column]:
    """What corrections and label_reviews share: the decided label and who decided when."""
    return [sa.Column("label", sa.Text, nullable=False),
            sa.Column("action", sa.Text, nullable=False),
            sa.Column("reviewer", sa.Text, nullable=False),
            sa.Column("reviewed_at", TIME, nullable=False)]


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", ID, primary_key=True),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("text", sa.Text),
        sa.Column("text_sha256", sa.Text, nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("scores", JSON, nullable=False),
        sa.Column("latency_ms", DOUBLE, nullable=False),
        sa.Column("shadow_label", sa.Text),
        sa.Column("shadow_model_version", sa.Text),
        sqlite_autoincrement=True, if_not_exists=True)
    op.create_table(
        "corrections",
        sa.Column("prediction_id", ID, sa.ForeignKey("predictions.id"), primary_key=True,
                  autoincrement=False),
        *_review_columns(), if_not_exists=True)
    op.create_table(
        "label_reviews",
        sa.Column("row_id", sa.Text, primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("given_label", sa.Text, nullable=False),
        *_review_columns(), if_not_exists=True)
    # Review sessions ended by logout, until they would have expired anyway.
    op.create_table(
        "revoked_sessions",
        sa.Column("session_id", sa.Text, primary_key=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        if_not_exists=True)
    op.create_index("predictions_request", "predictions", ["request_id", "position"],
                    if_not_exists=True)
    op.create_index("predictions_created", "predictions", ["created_at"], if_not_exists=True)
