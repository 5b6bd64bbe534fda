"""The data checks the validate stage runs: every rule over the training split and the frozen
holdout, streamed in chunks, as findings that name the file, line and rule."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.analysis.label_noise import check_label_noise, digests, pair_digests
from pipelines.core.data import (
    DataError,
    control_characters,
    dataset_hash,
    file_md5,
    normalise,
)
from pipelines.core.production import POINTER as PRODUCTION_POINTER
from pipelines.core.production import ProductionRecord, read_pointer
from pipelines.core.provenance import Proofs, signing_key
from pipelines.runtime.params import Params

REQUIRED_COLUMNS = ("text", "label")


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    file: str
    row: int | None  # line number in the file (the header is line 1); None for file-wide findings
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}" if self.row else self.file
        return f"{self.severity.upper()} [{self.rule}] {where}: {self.message}"


class _Collector:
    def __init__(self, severity: dict[str, str]):
        self.severity = severity
        self.findings: list[Finding] = []

    def add(self, rule: str, file: str, row: int | None, message: str) -> None:
        level = self.severity[rule]
        if level != "off":
            self.findings.append(Finding(rule, level, file, row, message))

    def add_error(self, rule: str, file: str, row: int | None, message: str) -> None:
        """A finding that is always an error: nothing else can be checked without it."""
        self.findings.append(Finding(rule, "error", file, row, message))


class UnreadableFile(Exception):
    """A data file that cannot be parsed as this project's CSV; `line` is where it goes wrong."""

    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line, self.message = line, message


BOM = b"\xef\xbb\xbf"
CHUNK_ROWS = 20_000  # rows held at once while streaming a split


def _is_blank(path: Path) -> bool:
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            if block.strip():
                return False
    return True


def _decoded_lines(path: Path) -> Iterator[str]:
    """The file's lines as text, line by line, so a decoding error names its line. A UTF-8
    byte-order mark is dropped (spreadsheet exports add one): left in, it would rename the
    first column `\\ufeffid`, and the id checks would not see an `id` column."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UnreadableFile(number, f"byte 0x{raw[e.start]:02x} is not UTF-8; save the "
                                             "file as UTF-8 (latin-1 or cp1252 exports are the "
                                             "usual cause)") from None
            if "\x00" in line:
                raise UnreadableFile(number, "contains NUL bytes: a binary file, not CSV")
            yield line


def check_header(header: list[str]) -> None:
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise UnreadableFile(1, f"column(s) {repeated} appear more than once in the header")
    if len(header) == 1:
        for name, sep in (("';'", ";"), ("a tab", "\t")):
            if sep in header[0]:
                raise UnreadableFile(1, f"the header is separated by {name}; this project's CSV "
                                        "files use ',' (re-export with comma separators)")


def iter_chunks(path: Path | str, chunk_rows: int = CHUNK_ROWS
                ) -> Iterator[tuple[list[str], list[int], list[list[str]]]]:
    """A split as (header, file lines, records) chunks of at most chunk_rows rows, each row
    with the file line it starts on (quoted newlines count); UnreadableFile names the line where
    the file stops being valid CSV. Memory stays at one chunk whatever the file's size."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found. Resolve the data pointer first: `make data`.")
    if _is_blank(path):
        raise UnreadableFile(None, f"file is empty ({path.stat().st_size} bytes); expected the "
                                   "header 'id,text,label,source' and one row per text")
    reader = csv.reader(_decoded_lines(path), strict=True)
    start = 1
    try:
        header = next(reader)
        check_header(header)
        lines: list[int] = []
        rows: list[list[str]] = []
        yielded = False
        start = reader.line_num + 1
        for record in reader:
            if record and len(record) != len(header):
                raise UnreadableFile(start, f"{len(record)} fields but the header has "
                                            f"{len(header)} (an unquoted ',' in the text?)")
            if record:
                rows.append(record)
                lines.append(start)
                if len(rows) == chunk_rows:
                    yield header, lines, rows
                    lines, rows, yielded = [], [], True
            start = reader.line_num + 1
    except csv.Error as e:
        raise UnreadableFile(start, f"not valid CSV from this line on: {e} "
                                    "(an unclosed or stray quote?)") from None
    if rows or not yielded:  # a header without rows is still a header
        yield header, lines, rows


def read_rows(path: Path | str) -> pd.DataFrame:
    """A whole split as strings, indexed by the file line each row starts on (for small files:
    the holdout, tests)."""
    chunks = list(iter_chunks(path))
    return pd.DataFrame([r for _, _, rows in chunks for r in rows], columns=chunks[0][0],
                        index=[line for _, lines, _ in chunks for line in lines], dtype=str)


@dataclass
class SplitScan:
    """One pass over a split: per row its file line, label index (-1: unknown) and digests of
    id, text and normalised text (0: empty text); the label counts. About 50 bytes a row,
    whatever the texts' length."""

    file: str
    columns: list[str]
    lines: np.ndarray
    labels: np.ndarray
    ids: np.ndarray | None
    exact: np.ndarray
    norm: np.ndarray
    pairs: np.ndarray  # (normalised text, label): what label_noise compares with production's
    claims_review: np.ndarray  # source says the review loop wrote the row
    reviewed: np.ndarray  # ... and a signed review record proves it
    label_counts: dict[str, int]

    def __len__(self) -> int:
        return len(self.lines)

    def rows_at(self, positions: np.ndarray) -> pd.DataFrame:
        """The rows at these positions (in file order), read again from the file."""
        wanted = np.sort(np.asarray(positions, dtype=np.int64))
        parts, seen = [], 0
        for header, lines, rows in iter_chunks(self.file):
            lo, hi = np.searchsorted(wanted, [seen, seen + len(rows)])
            picked = wanted[lo:hi] - seen
            if len(picked):
                parts.append(pd.DataFrame([rows[i] for i in picked], columns=header,
                                          index=[lines[i] for i in picked], dtype=str))
            seen += len(rows)
        return pd.concat(parts) if parts else pd.DataFrame(columns=self.columns, dtype=str)


def scan_split(path: str, labels: list[str], max_chars: int, out: _Collector,
               proofs: Proofs | None = None, review_source: str | None = None,
               chunk_rows: int = CHUNK_ROWS) -> SplitScan | None:
    """Stream a split once: the per-row rules as findings, the rest as digests for the checks
    across rows. None (after recording why) when the file cannot be read or lacks a column."""
    label_index = {label: i for i, label in enumerate(labels)}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (
        "lines", "labels", "ids", "exact", "norm", "pairs", "claims", "reviewed")}
    counts: dict[str, int] = {}
    columns: list[str] = []
    try:
        for header, lines, rows in iter_chunks(path, chunk_rows):
            if not columns:
                columns = header
                missing = [c for c in REQUIRED_COLUMNS if c not in header]
                if missing:
                    out.add("schema", path, None, f"missing column(s) {missing}; found {header}")
                    return None
            col = {name: header.index(name) for name in header}
            texts = [r[col["text"]] for r in rows]
            row_labels = [r[col["label"]] for r in rows]
            sources = [r[col["source"]] for r in rows] if "source" in col else [""] * len(rows)
            ids = [r[col["id"]] for r in rows] if "id" in col else None
            claims = np.array([s == review_source for s in sources], dtype=bool)
            reviewed = np.zeros(len(rows), dtype=bool)
            for i, (line, text, label) in enumerate(zip(lines, texts, row_labels, strict=True)):
                counts[label] = counts.get(label, 0) + 1
                check_row(path, line, text, label, labels, max_chars, out)
                if claims[i]:
                    row_id = ids[i] if ids is not None else ""
                    why = "the split has no id column" if ids is None or proofs is None \
                        else proofs.why_unproven(row_id, text, label)
                    if why is None:
                        reviewed[i] = True
                    else:
                        out.add("feedback_unproven", path, line,
                                f"id {row_id!r} says source {review_source!r} but {why}: its "
                                "label is checked like any new row's (only rows `make "
                                "feedback` wrote and signed are trusted)")
            normalised = [normalise(t) if t.strip() else "" for t in texts]
            parts["lines"].append(np.array(lines, dtype=np.int64))
            parts["labels"].append(np.array([label_index.get(x, -1) for x in row_labels],
                                            dtype=np.int16))
            if ids is not None:
                parts["ids"].append(digests(ids))
            parts["exact"].append(digests(texts))
            norm = digests(normalised)
            norm[[not t.strip() for t in texts]] = 0
            parts["norm"].append(norm)
            parts["pairs"].append(pair_digests(normalised, row_labels))
            parts["claims"].append(claims)
            parts["reviewed"].append(reviewed)
    except UnreadableFile as e:
        out.add_error("unreadable_file", path, e.line, e.message)
        return None

    def joined(key: str, dtype: str) -> np.ndarray:
        return np.concatenate(parts[key]) if parts[key] else np.zeros(0, dtype=dtype)

    return SplitScan(path, columns, joined("lines", "int64"), joined("labels", "int16"),
                     joined("ids", "uint64") if "id" in columns else None,
                     joined("exact", "uint64"), joined("norm", "uint64"),
                     joined("pairs", "uint64"),
                     joined("claims", "bool"), joined("reviewed", "bool"), counts)


def check_row(file: str, line: int, text: str, label: str, labels: list[str], max_chars: int,
              out: _Collector) -> None:
    if label not in labels:
        out.add("unknown_label", file, line,
                f"label {label!r} is not one of {labels} (params.yaml data.labels)")
    if not text.strip():
        out.add("empty_text", file, line, "text is empty or whitespace only")
    elif len(text) > max_chars:
        out.add("too_long", file, line,
                f"text has {len(text)} characters, more than validate.max_chars={max_chars}")
    found = control_characters(text)
    if found:
        out.add("control_characters", file, line,
                f"text contains control character(s) {', '.join(found)}; remove them (only tab "
                "and line breaks are allowed)")


def check_not_empty(scan: SplitScan, out: _Collector) -> None:
    if not len(scan):
        out.add("empty_split", scan.file, None, "no rows after the header; nothing to train or "
                                                "evaluate on")


def repeats(keys: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positions of rows whose key an earlier row has, and that earlier first row's position."""
    positions = np.arange(len(keys)) if mask is None else np.flatnonzero(mask)
    order = positions[np.argsort(keys[positions], kind="stable")]
    ordered = keys[order]
    first_of_group = np.r_[True, ordered[1:] != ordered[:-1]] if len(order) else \
        np.zeros(0, dtype=bool)
    group_start = np.maximum.accumulate(np.where(first_of_group, np.arange(len(order)), 0))
    later = ~first_of_group
    return order[later], order[group_start[later]]


def check_ids(scan: SplitScan, out: _Collector) -> None:
    if scan.ids is None:
        return
    found = sorted(zip(*repeats(scan.ids), strict=True))
    if not found:
        return
    ids = scan.rows_at(np.array([row for row, _ in found]))["id"]  # their text, for the message
    for (row, first), row_id in zip(found, ids, strict=True):
        out.add("duplicate_id", scan.file, int(scan.lines[row]),
                f"id {row_id!r} already used on line {int(scan.lines[first])}")


def check_duplicates(scan: SplitScan, labels: list[str], out: _Collector) -> None:
    nonempty = scan.norm != 0
    found: list[tuple[int, int, str, str]] = []  # (line, order, rule, message)
    for row, first in zip(*repeats(scan.exact, nonempty), strict=True):
        found.append((int(scan.lines[row]), 0, "exact_duplicate",
                      f"same text as line {int(scan.lines[first])}"))
    for row, first in zip(*repeats(scan.norm, nonempty), strict=True):
        line, other_line = int(scan.lines[row]), int(scan.lines[first])
        label, other = scan.labels[row], scan.labels[first]
        if label != other:
            found.append((line, 1, "conflicting_labels",
                          f"label {_label_name(label, labels)!r} but line {other_line} has the "
                          f"same text labelled {_label_name(other, labels)!r}"))
        elif scan.exact[row] != scan.exact[first]:
            found.append((line, 1, "normalised_duplicate",
                          f"same text as line {other_line} up to case, accents and punctuation"))
    for line, _, rule, message in sorted(found):
        out.add(rule, scan.file, line, message)


def _label_name(index: int, labels: list[str]) -> str:
    return labels[index] if index >= 0 else "(not in data.labels)"


def check_leak(train: SplitScan, holdout: SplitScan, out: _Collector) -> None:
    leaked = np.isin(train.norm, holdout.norm[holdout.norm != 0]) & (train.norm != 0)
    for row in np.flatnonzero(leaked):
        out.add("holdout_leak", train.file, int(train.lines[row]),
                "text also appears in the frozen holdout; remove it from the training data")


def check_balance(share: dict[str, float], reference: dict[str, float] | None, max_shift: float,
                  file: str, out: _Collector) -> None:
    if not reference:
        return
    for label, value in share.items():
        shift = abs(value - float(reference.get(label, 0.0)))
        if shift > max_shift:
            out.add("balance_shift", file, None,
                    f"share of {label!r} moved from {reference.get(label, 0.0):.3f} in "
                    f"production's training data to {value:.3f} (more than "
                    f"validate.max_balance_shift={max_shift})")


def read_production(pointer: Path = PRODUCTION_POINTER) -> ProductionRecord | None:
    """Production's record, or None without one (no pointer file, or `version: null`)."""
    return read_pointer(pointer) if pointer.exists() else None


def label_shares(scan: SplitScan, labels: list[str]) -> dict[str, float]:
    """Share of each label, rounded like core.data.label_share (unknown labels count too)."""
    total = max(len(scan), 1)
    return {label: round(scan.label_counts.get(label, 0) / total, 4) for label in labels}


def validate_dataset(params: Params, production_pointer: Path = PRODUCTION_POINTER,
                     chunk_rows: int = CHUNK_ROWS) -> dict:
    """Run every rule over both splits, streaming each file; return the report (errors make
    `passed` false)."""
    out = _Collector(params.validate_.severity.model_dump(by_alias=True))
    labels, vp = params.data.labels, params.validate_
    train_file, holdout_file = params.data.train_file, params.data.holdout_file
    proofs = Proofs(params.feedback.provenance_file, signing_key())
    train = scan_split(train_file, labels, vp.max_chars, out, proofs, params.feedback.source,
                       chunk_rows)
    # The holdout is never written by the review loop: no row of it is trusted as reviewed.
    holdout = scan_split(holdout_file, labels, vp.max_chars, out, chunk_rows=chunk_rows)
    share = noise = None
    for scan in (s for s in (train, holdout) if s is not None):
        check_not_empty(scan, out)
        check_ids(scan, out)
        check_duplicates(scan, labels, out)
    if train is not None and holdout is not None:
        check_leak(train, holdout, out)
        share = label_shares(train, labels)
        production = read_production(production_pointer)
        check_balance(share, production and production.dataset.label_share,
                      vp.max_balance_shift, train_file, out)
        noise = check_label_noise(params, train, holdout, production, out.add)
    errors = [f for f in out.findings if f.severity == "error"]
    by_rule: dict[str, int] = {}
    for f in out.findings:
        by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
    return {
        "passed": not errors,
        "errors": len(errors),
        "warnings": len(out.findings) - len(errors),
        "by_rule": by_rule,
        "dataset_md5": dataset_hash(),
        "holdout_md5": file_md5(holdout_file),
        "rows": {"train": None if train is None else len(train),
                 "holdout": None if holdout is None else len(holdout)},
        "label_share": share,
        "label_noise": noise,
        "findings": [asdict(f) for f in out.findings],
    }
