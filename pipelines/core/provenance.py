"""Proof that a training row's label came from the review loop.

`make feedback` appends one signed record per row it adds or relabels to the provenance file
(params.yaml feedback.provenance_file, tracked in git beside data.dvc, so a data PR shows it):
the row id, the SHA-256 of the row's text exactly as written to the training split, the label,
the reviewer and the review time, signed with HMAC-SHA256 under MODERATION_PROVENANCE_KEY. The
validate stage trusts a row's `source: feedback` only when a record with a valid signature
matches its id, text and label; checking needs the key, not the review database.

Why a key: a data PR can write any row and any record, so an unsigned record would prove
nothing. The key lives where `make feedback` runs and in CI's secrets; a pull request that
cannot read it (a fork's) cannot prove a row reviewed, and its rows are scored like any other.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.core.data import DataError

KEY_ENV = "MODERATION_PROVENANCE_KEY"
MIN_KEY_CHARS = 32


class ProvenanceError(DataError):
    """The provenance file or key is unusable; the message says where and what to do."""


def text_sha256(text: str) -> str:
    """The hash a record carries: of the text exactly as the training split stores it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ReviewRecord:
    id: str
    text_sha256: str
    label: str
    reviewer: str
    reviewed_at: str
    signature: str = ""

    def payload(self) -> bytes:
        return json.dumps([self.id, self.text_sha256, self.label, self.reviewer,
                           self.reviewed_at], ensure_ascii=False).encode("utf-8")


def signing_key(env: dict[str, str] | None = None) -> bytes | None:
    """The key from MODERATION_PROVENANCE_KEY; None when unset; an error when too short."""
    value = (os.environ if env is None else env).get(KEY_ENV, "")
    if not value:
        return None
    if len(value) < MIN_KEY_CHARS:
        raise ProvenanceError(f"{KEY_ENV} has {len(value)} characters; use at least "
                              f"{MIN_KEY_CHARS} random ones (e.g. `openssl rand -hex 32`)")
    return value.encode("utf-8")


def sign(record: ReviewRecord, key: bytes) -> ReviewRecord:
    digest = hmac.new(key, record.payload(), hashlib.sha256).hexdigest()
    return ReviewRecord(**(asdict(record) | {"signature": digest}))


def verifies(record: ReviewRecord, key: bytes) -> bool:
    expected = hmac.new(key, record.payload(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, record.signature)


def read_records(path: Path | str) -> list[tuple[int, ReviewRecord]]:
    """Every record of the file with its line number; a missing file holds none."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                fields = json.loads(line)
                records.append((number, ReviewRecord(**{k: str(fields[k]) for k in (
                    "id", "text_sha256", "label", "reviewer", "reviewed_at", "signature")})))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ProvenanceError(
                    f"{path}:{number}: not a review record ({e}); each line is the JSON "
                    "object `make feedback` writes. Restore the file from git: "
                    f"`git checkout HEAD -- {path}`") from None
    return records


def append_records(path: Path | str, records: list[ReviewRecord], key: bytes) -> None:
    """Sign and append; existing lines stay as they were."""
    path = Path(path)
    existing = path.read_bytes() if path.exists() else b""
    with path.open("ab") as handle:
        if existing and not existing.endswith(b"\n"):
            handle.write(b"\n")
        for record in records:
            line = json.dumps(asdict(sign(record, key)), ensure_ascii=False)
            handle.write(line.encode("utf-8") + b"\n")


class Proofs:
    """The verified records of one provenance file, by row id."""

    def __init__(self, path: Path | str, key: bytes | None):
        self.path, self.key = str(path), key
        self.by_id: dict[str, list[ReviewRecord]] = {}
        for _, record in read_records(path):
            self.by_id.setdefault(record.id, []).append(record)

    def why_unproven(self, row_id: str, text: str, label: str) -> str | None:
        """None when a signed record proves this row was reviewed with this label; else why not."""
        records = self.by_id.get(row_id, [])
        if not records:
            return f"no review record for this id in {self.path}"
        if self.key is None:
            return (f"{KEY_ENV} is not set, so the review record in {self.path} cannot be "
                    "verified")
        signed = [r for r in records if verifies(r, self.key)]
        if not signed:
            return f"the review record in {self.path} has no valid signature"
        digest = text_sha256(text)
        if not any(r.text_sha256 == digest for r in signed):
            return "the text differs from the reviewed one"
        if not any(r.text_sha256 == digest and r.label == label for r in signed):
            return f"label {label!r} is not the reviewed one"
        return None
