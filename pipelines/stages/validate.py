"""validate stage: check the training data and the frozen holdout before anything trains on them."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
import yaml

from pipelines.core.cli import ParamsOpt, run_as_script
from pipelines.core.data import (
    DataError,
    dataset_hash,
    file_md5,
    label_share,
    normalise,
)
from pipelines.core.params import PARAMS_FILE, Params, load_params
from pipelines.core.production import POINTER as PRODUCTION_POINTER
from pipelines.stages.label_noise import check_label_noise

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


def _line(index: int) -> int:
    """Frames read by read_rows are indexed by the file line each row starts on."""
    return int(index)


def decode_utf8(raw: bytes) -> str:
    if not raw.strip():
        raise UnreadableFile(None, f"file is empty ({len(raw)} bytes); expected the header "
                                   "'id,text,label,source' and one row per text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise UnreadableFile(line, f"byte 0x{raw[e.start]:02x} is not UTF-8; save the file "
                                   "as UTF-8 (latin-1 or cp1252 exports are the usual "
                                   "cause)") from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise UnreadableFile(line, "contains NUL bytes: a binary file, not CSV")
    return text


def check_header(header: list[str]) -> None:
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise UnreadableFile(1, f"column(s) {repeated} appear more than once in the header")
    if len(header) == 1:
        for name, sep in (("';'", ";"), ("a tab", "\t")):
            if sep in header[0]:
                raise UnreadableFile(1, f"the header is separated by {name}; this project's CSV "
                                        "files use ',' (re-export with comma separators)")


def read_rows(path: Path | str) -> pd.DataFrame:
    """A split as strings, indexed by the file line each row starts on (quoted newlines count);
    UnreadableFile names the line where the file stops being valid CSV."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found. Resolve the data pointer first: `make data`.")
    reader = csv.reader(io.StringIO(decode_utf8(path.read_bytes()), newline=""), strict=True)
    start = 1
    try:
        header = next(reader)
        check_header(header)
        rows, lines = [], []
        start = reader.line_num + 1
        for record in reader:
            if record and len(record) != len(header):
                raise UnreadableFile(start, f"{len(record)} fields but the header has "
                                            f"{len(header)} (an unquoted ',' in the text?)")
            if record:
                rows.append(record)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as e:
        raise UnreadableFile(start, f"not valid CSV from this line on: {e} "
                                    "(an unclosed or stray quote?)") from None
    return pd.DataFrame(rows, columns=header, index=lines, dtype=str)


def read_checked(path: str, out: _Collector) -> pd.DataFrame | None:
    """The split, or None after recording why it cannot be read."""
    try:
        return read_rows(path)
    except UnreadableFile as e:
        out.add_error("unreadable_file", path, e.line, e.message)
        return None


def check_schema(frame: pd.DataFrame, file: str, out: _Collector) -> bool:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        out.add("schema", file, None, f"missing column(s) {missing}; found {list(frame.columns)}")
    return not missing


def check_rows(frame: pd.DataFrame, file: str, labels: list[str], max_chars: int,
               out: _Collector) -> None:
    for index, text, label in zip(frame.index, frame.text, frame.label, strict=True):
        if label not in labels:
            out.add("unknown_label", file, _line(index),
                    f"label {label!r} is not one of {labels} (params.yaml data.labels)")
        if not text.strip():
            out.add("empty_text", file, _line(index), "text is empty or whitespace only")
        elif len(text) > max_chars:
            out.add("too_long", file, _line(index),
                    f"text has {len(text)} characters, more than validate.max_chars={max_chars}")


def check_not_empty(frame: pd.DataFrame, file: str, out: _Collector) -> None:
    if frame.empty:
        out.add("empty_split", file, None, "no rows after the header; nothing to train or "
                                           "evaluate on")


def check_ids(frame: pd.DataFrame, file: str, out: _Collector) -> None:
    if "id" not in frame.columns:
        return
    first: dict[str, int] = {}
    for index, row_id in zip(frame.index, frame["id"], strict=True):
        if row_id in first:
            out.add("duplicate_id", file, _line(index),
                    f"id {row_id!r} already used on line {first[row_id]}")
        else:
            first[row_id] = _line(index)


def check_duplicates(frame: pd.DataFrame, file: str, out: _Collector) -> None:
    first_exact: dict[str, int] = {}
    first_norm: dict[str, tuple[int, str, str]] = {}
    for index, text, label in zip(frame.index, frame.text, frame.label, strict=True):
        if not text.strip():
            continue
        line, key = _line(index), normalise(text)
        if text in first_exact:
            out.add("exact_duplicate", file, line, f"same text as line {first_exact[text]}")
        else:
            first_exact[text] = line
        if key in first_norm:
            other_line, other_text, other_label = first_norm[key]
            if other_label != label:
                out.add("conflicting_labels", file, line,
                        f"label {label!r} but line {other_line} has the same text "
                        f"labelled {other_label!r}")
            elif other_text != text:
                out.add("normalised_duplicate", file, line,
                        f"same text as line {other_line} up to case, accents and punctuation")
        else:
            first_norm[key] = (line, text, label)


def check_leak(train: pd.DataFrame, holdout: pd.DataFrame, file: str, out: _Collector) -> None:
    held = {normalise(t) for t in holdout.text if t.strip()}
    for index, text in zip(train.index, train.text, strict=True):
        if text.strip() and normalise(text) in held:
            out.add("holdout_leak", file, _line(index),
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


def production_label_share(pointer: Path = PRODUCTION_POINTER) -> dict[str, float] | None:
    if not pointer.exists():
        return None
    record = yaml.safe_load(pointer.read_text(encoding="utf-8")) or {}
    return (record.get("dataset") or {}).get("label_share")


def validate_dataset(params: Params, production_pointer: Path = PRODUCTION_POINTER) -> dict:
    """Run every rule over both splits; return the report (errors make `passed` false)."""
    out = _Collector(params.validate_.severity.model_dump(by_alias=True))
    labels = params.data.labels
    train_file, holdout_file = params.data.train_file, params.data.holdout_file
    train, holdout = read_checked(train_file, out), read_checked(holdout_file, out)
    readable = [(f, n) for f, n in ((train, train_file), (holdout, holdout_file)) if f is not None]
    schema_ok = [check_schema(f, n, out) for f, n in readable]
    share = noise = None
    if len(readable) == 2 and all(schema_ok):
        for frame, name in readable:
            check_not_empty(frame, name, out)
            check_ids(frame, name, out)
            check_rows(frame, name, labels, params.validate_.max_chars, out)
            check_duplicates(frame, name, out)
        check_leak(train, holdout, train_file, out)
        share = label_share(train, labels)
        check_balance(share, production_label_share(production_pointer),
                      params.validate_.max_balance_shift, train_file, out)
        noise = check_label_noise(params, train, holdout, production_pointer, out.add)
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


def write_gate(report: dict, gate_path: Path) -> None:
    """What training waits on: the data versions that passed. Unlike the report it does not
    change when production does (a promotion), so the run on main after a merge retrains
    nothing."""
    gate = {key: report[key] for key in ("dataset_md5", "holdout_md5", "passed")}
    gate_path.write_text(json.dumps(gate, indent=2) + "\n", encoding="utf-8")


def run(params: Params, report_path: Path | str, gate_path: Path | str | None = None) -> dict:
    """Validate, write the JSON report (and, when it passed, the gate record training depends
    on), print findings; raise DataError if any rule failed."""
    report = validate_dataset(params)
    report_path = Path(report_path)
    gate_path = Path(gate_path or report_path.with_name("validated.json"))
    gate_path.unlink(missing_ok=True)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    findings = [Finding(**f) for f in report["findings"]]
    for f in findings[:50]:
        print(f)
    if len(findings) > 50:
        print(f"... {len(findings) - 50} more in {report_path}")
    print(f"validate: {report['errors']} error(s), {report['warnings']} warning(s); "
          f"report: {report_path}")
    if not report["passed"]:
        raise DataError(f"data validation failed with {report['errors']} error(s); "
                        f"see {report_path}")
    write_gate(report, gate_path)
    return report


def command(report: Path = Path("reports/validation.json"),
            gate: Annotated[Path | None, typer.Option(
                help="Gate record (default: validated.json beside the report).")] = None,
            params: ParamsOpt = PARAMS_FILE) -> None:
    """Check the training data and the holdout; exit 1 on any error-level finding."""
    run(load_params(params), report, gate)


if __name__ == "__main__":
    run_as_script(command)
