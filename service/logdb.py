"""`python -m service.logdb`: migrate, check and prune the prediction-log database.

The Alembic migrations in service/migrations are the only place its schema changes. In a cluster
`migrate` runs as an Argo CD PreSync Job before the new pods roll out (k8s/base/migrate-job.yaml);
the serving pods only check the revision. Migrations are additive (expand, then contract in a
later release), so pods of the previous release keep working on the migrated schema.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from functools import cache
from pathlib import Path

import sqlalchemy as sa

from pipelines.runtime.errors import PipelineError
from service.predlog import backend_of, make_engine, purge_texts, where

logger = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATE_COMMAND = "python -m service.logdb migrate"


class SchemaError(PipelineError):
    """The database's schema is older than this code needs (or absent)."""


def _config(connection: sa.Connection | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@cache
def _scripts():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The revision this code's tables are written for."""
    return _scripts().get_current_head()


def current_revision(connection: sa.Connection) -> str | None:
    """The revision recorded in the database; None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str]:
    """Apply the migrations up to `revision` in one transaction; (before, after)."""
    from alembic import command

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            before = current_revision(conn)
            command.upgrade(_config(conn), revision)
            return before, current_revision(conn) or ""
    finally:
        engine.dispose()


def check_current(url: str, timeout: float = 5.0, engine: sa.Engine | None = None) -> str:
    """The database's revision when this code can write to it; SchemaError when it is behind.
    A revision this code does not know is a later release's (additive): accepted, with a warning.
    Connection errors propagate unchanged (the caller decides whether to wait)."""
    own = engine is None
    engine = engine or make_engine(url, timeout)
    try:
        with engine.connect() as conn:
            current = current_revision(conn)
    finally:
        if own:
            engine.dispose()
    head = head_revision()
    if current == head:
        return current
    known = {s.revision for s in _scripts().walk_revisions()}
    if current is None:
        raise SchemaError(f"prediction log {where(url)} has no migration history (empty, or "
                          f"created before migrations): run `{MIGRATE_COMMAND}` (the migrate "
                          f"Job); it adopts an existing log without losing rows")
    if current in known:
        raise SchemaError(f"prediction log {where(url)} is at schema revision {current}; this "
                          f"service needs {head}: run `{MIGRATE_COMMAND}` (the migrate Job)")
    logger.warning("prediction log %s is at revision %s, newer than this code's %s; "
                   "migrations are additive, so writing continues", where(url), current, head)
    return current


def require_current(url: str) -> None:
    """check_current for command-line tools: an unreachable database is a PipelineError too."""
    try:
        check_current(url)
    except SchemaError:
        raise
    except Exception as e:
        raise PipelineError(f"cannot reach the prediction log at {where(url)}: {e}") from e


def _default_url() -> str:
    if os.environ.get("MODERATION_DB_URL"):
        return os.environ["MODERATION_DB_URL"]
    from service.settings import load_settings

    return load_settings().db_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.logdb", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db-url", help="default: MODERATION_DB_URL, else serve.db_url")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply every pending migration (idempotent)")
    sub.add_parser("check", help="exit 1 unless the schema is the one this code needs")
    purge = sub.add_parser("purge-text", help="forget the texts of rows older than N days")
    purge.add_argument("--older-than-days", type=float, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the summary line below says it
    url = args.db_url or _default_url()
    try:
        backend_of(url)
        if args.command == "migrate":
            before, after = upgrade(url)
            print(f"prediction log {where(url)}: schema {before or 'none'} -> {after}")
        elif args.command == "check":
            print(f"prediction log {where(url)}: schema {check_current(url)} (ok)")
        else:
            if args.older_than_days <= 0:
                raise PipelineError(f"--older-than-days {args.older_than_days:g}: must be > 0")
            require_current(url)
            engine = make_engine(url)
            try:
                purged = purge_texts(engine, args.older_than_days)
            finally:
                engine.dispose()
            print(f"prediction log {where(url)}: forgot the text of {purged} row(s) older "
                  f"than {args.older_than_days:g} days")
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except sa.exc.OperationalError as e:
        print(f"error: cannot reach the prediction log at {where(url)}: {e.orig}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
