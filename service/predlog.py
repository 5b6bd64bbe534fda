"""The prediction log: schema, connections (SQLite WAL or PostgreSQL) and an off-path writer.

The review UI reuses `connect`, `create_schema` and `PREDICTION_COLUMNS` from here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipelines.core.errors import PipelineError

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = ("request_id", "position", "created_at", "model_version", "text",
                      "text_sha256", "label", "scores", "latency_ms", "shadow_label",
                      "shadow_model_version")

# One statement per backend; the columns and their meaning are identical.
_SCHEMA = {
    "sqlite": """
CREATE TABLE IF NOT EXISTS predictions (
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
    "postgresql": """
CREATE TABLE IF NOT EXISTS predictions (
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
}
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS predictions_request ON predictions (request_id, position)",
    "CREATE INDEX IF NOT EXISTS predictions_created ON predictions (created_at)",
)


class DatabaseURLError(PipelineError):
    """MODERATION_DB_URL is not a sqlite:/// or postgresql:// URL."""


def backend_of(url: str) -> str:
    """'sqlite' or 'postgresql' for a SQLAlchemy-style database URL."""
    scheme = urlparse(url).scheme.split("+")[0]
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise DatabaseURLError(f"database URL {url!r}: expected sqlite:///PATH or "
                           "postgresql://user:pass@host:5432/db")


def sqlite_path(url: str) -> Path:
    """The file of a sqlite:///relative.db or sqlite:////absolute.db URL."""
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path:
        raise DatabaseURLError(f"database URL {url!r}: sqlite URLs need a file path")
    return Path(path)


def connect(url: str) -> Any:
    """A DB-API connection (autocommit off) to the prediction log at `url`."""
    if backend_of(url) == "sqlite":
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                           connect_timeout=5)


def create_schema(url: str) -> None:
    """Create the predictions table and its indexes if missing, on either backend."""
    conn = connect(url)
    try:
        conn.execute(_SCHEMA[backend_of(url)])
        for statement in _INDEXES:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def placeholder(url: str) -> str:
    """The query parameter mark of the URL's driver: sqlite3's `?`, psycopg's `%s`."""
    return "?" if backend_of(url) == "sqlite" else "%s"


def placeholders(url: str, n: int) -> str:
    return ", ".join([placeholder(url)] * n)


def text_fields(text: str, log_text: str) -> tuple[str | None, str]:
    """(text or None, sha256) as stored, following the `log_text` setting."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return (text if log_text == "text" else None), digest


def prediction_rows(request_id: str, texts: list[str], predictions: list[dict[str, Any]],
                    latency_ms: float, log_text: str) -> list[tuple]:
    """The log rows of one answered request, in PREDICTION_COLUMNS order."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() % 1 * 1e6):06d}Z"
    rows = []
    for position, (text, pred) in enumerate(zip(texts, predictions, strict=True)):
        stored_text, digest = text_fields(text, log_text)
        rows.append((request_id, position, now, pred["model_version"], stored_text, digest,
                     pred["label"], json.dumps(pred["scores"]), round(latency_ms, 3), None, None))
    return rows


@dataclass
class _Insert:
    rows: list[tuple]


@dataclass
class _ShadowUpdate:
    request_id: str
    labels: list[str]
    model_version: str


@dataclass
class PredictionLog:
    """Bounded queue + one background thread writing batches to the database.

    `record` never blocks the response: a full queue drops the rows and counts them.
    """

    url: str
    max_queue: int = 10000
    on_written: Callable[[int], None] = lambda n: None
    on_dropped: Callable[[int], None] = lambda n: None
    _queue: queue.Queue = field(init=False)
    _thread: threading.Thread | None = field(init=False, default=None)
    _stopping: threading.Event = field(init=False, default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._queue = queue.Queue(maxsize=self.max_queue)

    def start(self) -> PredictionLog:
        create_schema(self.url)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        return self

    def record(self, rows: list[tuple]) -> bool:
        """Queue rows for writing; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(_Insert(rows))
            return True
        except queue.Full:
            self.on_dropped(len(rows))
            return False

    def record_shadow(self, request_id: str, labels: list[str], model_version: str) -> None:
        """Queue the shadow model's labels for an already recorded request."""
        try:
            self._queue.put_nowait(_ShadowUpdate(request_id, labels, model_version))
        except queue.Full:
            self.on_dropped(0)

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            conn = connect(self.url)
            try:
                conn.execute("SELECT 1")
            finally:
                conn.close()
            return True
        except Exception as e:  # readiness must report, not raise
            logger.warning("prediction log database unreachable: %s", e)
            return False

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, then stop the writer (graceful shutdown)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _drain(self, first: Any | None) -> list[Any]:
        items = [] if first is None else [first]
        while len(items) < 500:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _run(self) -> None:
        conn = None
        while True:
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                first = None
            items = self._drain(first)
            if not items:
                if self._stopping.is_set():
                    break
                continue
            conn = conn or self._connect_with_retry()
            if conn is None:
                self.on_dropped(sum(len(i.rows) for i in items if isinstance(i, _Insert)))
                continue
            try:
                self._write(conn, items)
            except Exception:
                logger.exception("prediction log write failed; %d items lost", len(items))
                self.on_dropped(sum(len(i.rows) for i in items if isinstance(i, _Insert)))
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _connect_with_retry(self) -> Any | None:
        for attempt in range(5):
            try:
                return connect(self.url)
            except Exception as e:
                logger.warning("prediction log: cannot connect (%s), retry %d", e, attempt + 1)
                time.sleep(0.5 * (attempt + 1))
        return None

    def _write(self, conn: Any, items: Iterable[Any]) -> None:
        insert = (f"INSERT INTO predictions ({', '.join(PREDICTION_COLUMNS)}) "
                  f"VALUES ({placeholders(self.url, len(PREDICTION_COLUMNS))})")
        update = ("UPDATE predictions SET shadow_label = {0}, shadow_model_version = {0} "
                  "WHERE request_id = {0} AND position = {0}").format(placeholder(self.url))
        written = 0
        cur = conn.cursor()
        for item in items:
            if isinstance(item, _Insert):
                cur.executemany(insert, item.rows)
                written += len(item.rows)
            else:
                cur.executemany(update, [(label, item.model_version, item.request_id, i)
                                         for i, label in enumerate(item.labels)])
        conn.commit()
        self.on_written(written)
