"""Every validation rule, on a dataset broken on purpose, through the real `dvc repro`."""

import json

import pandas as pd
import pytest
import yaml

from tests.conftest import pipelines_cli, run


def _rows(repo, split):
    return pd.read_csv(repo / f"data/{split}.csv", dtype=str, keep_default_na=False)


def _write(repo, split, frame):
    frame.to_csv(repo / f"data/{split}.csv", index=False)


def _set_severity(repo, rule, level):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["validate"]["severity"][rule] = level
    (repo / "params.yaml").write_text(yaml.safe_dump(params))


def _break_unknown_label(repo):
    train = _rows(repo, "train")
    train.loc[4, "label"] = "spam"
    _write(repo, "train", train)
    return "data/train.csv:6", "label 'spam' is not one of"


def _break_empty_text(repo):
    train = _rows(repo, "train")
    train.loc[9, "text"] = "   "
    _write(repo, "train", train)
    return "data/train.csv:11", "empty or whitespace"


def _break_too_long(repo):
    train = _rows(repo, "train")
    train.loc[2, "text"] = "word " * 400
    _write(repo, "train", train)
    return "data/train.csv:4", "more than validate.max_chars=1000"


def _break_schema(repo):
    train = _rows(repo, "train").rename(columns={"label": "class"})
    _write(repo, "train", train)
    return "data/train.csv", "missing column(s) ['label']"


def _break_conflicting_labels(repo):
    train = _rows(repo, "train")
    flipped = train.iloc[[0]].copy()
    flipped["label"] = "offensive" if flipped.label.iloc[0] != "offensive" else "not-offensive"
    flipped["text"] = flipped.text.str.upper()
    _write(repo, "train", pd.concat([train, flipped], ignore_index=True))
    return f"data/train.csv:{len(train) + 2}", "has the same text labelled"


def _break_holdout_leak(repo):
    train, holdout = _rows(repo, "train"), _rows(repo, "holdout")
    _write(repo, "train", pd.concat([train, holdout.iloc[[3]]], ignore_index=True))
    return f"data/train.csv:{len(train) + 2}", "appears in the frozen holdout"


def _break_exact_duplicate(repo):
    train = _rows(repo, "train")
    _write(repo, "train", pd.concat([train, train.iloc[[7]]], ignore_index=True))
    _set_severity(repo, "exact_duplicate", "error")
    return f"data/train.csv:{len(train) + 2}", "same text as line 9"


def _break_normalised_duplicate(repo):
    train = _rows(repo, "train")
    copy = train.iloc[[7]].copy()
    copy["text"] = copy.text.str.upper() + "!!"
    _write(repo, "train", pd.concat([train, copy], ignore_index=True))
    _set_severity(repo, "normalised_duplicate", "error")
    return f"data/train.csv:{len(train) + 2}", "up to case, accents and punctuation"


def _break_balance_shift(repo):
    train = _rows(repo, "train")
    _write(repo, "train", train[train.label == "not-offensive"].head(3000))
    pointer = repo / "models/production.yaml"
    record = yaml.safe_load(pointer.read_text())
    record["dataset"]["label_share"] = {"not-offensive": 0.67, "offensive": 0.33}
    pointer.write_text(yaml.safe_dump(record))
    _set_severity(repo, "balance_shift", "error")
    return "data/train.csv", "share of 'not-offensive' moved from 0.670"


BREAKERS = {
    "schema": _break_schema,
    "unknown_label": _break_unknown_label,
    "empty_text": _break_empty_text,
    "too_long": _break_too_long,
    "exact_duplicate": _break_exact_duplicate,
    "normalised_duplicate": _break_normalised_duplicate,
    "conflicting_labels": _break_conflicting_labels,
    "holdout_leak": _break_holdout_leak,
    "balance_shift": _break_balance_shift,
}


def _assert_stopped_by(result, repo, rule, where, message):
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"ERROR [{rule}] {where}" in output
    assert message in output
    assert not (repo / "models/candidate").exists()
    assert not (repo / "models/baseline").exists()
    report = json.loads((repo / "reports/validation.json").read_text())
    assert report["passed"] is False and report["by_rule"][rule] >= 1


@pytest.mark.parametrize("rule", sorted(BREAKERS))
def test_rule_error_fails_validation_naming_file_row_and_rule(fresh_repo, rule):
    where, message = BREAKERS[rule](fresh_repo)
    _assert_stopped_by(pipelines_cli(["validate"], fresh_repo, check=False), fresh_repo, rule,
                       where, message)


# The pipeline's own stop, through the real `dvc repro` (the stage script dvc.yaml runs): one
# rule stands for all, as the stop does not depend on which rule failed.
def test_rule_error_stops_pipeline_naming_file_row_and_rule(fresh_repo):
    where, message = _break_unknown_label(fresh_repo)
    _assert_stopped_by(run(["dvc", "repro"], fresh_repo, check=False), fresh_repo,
                       "unknown_label", where, message)


def test_warnings_are_reported_without_failing(fresh_repo):
    train = _rows(fresh_repo, "train")
    copy = train.iloc[[7]].assign(id="train-copy")
    _write(fresh_repo, "train", pd.concat([train, copy], ignore_index=True))
    result = pipelines_cli(["validate"], fresh_repo)
    assert "WARN [exact_duplicate]" in result.stdout
    report = json.loads((fresh_repo / "reports/validation.json").read_text())
    assert report["passed"] is True and report["warnings"] == 1 and report["errors"] == 0


def test_bundled_data_passes_cleanly(base_repo, tmp_path):
    run(["python", "-m", "pipelines", "validate", "--report", str(tmp_path / "v.json")], base_repo)
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["passed"] and report["errors"] == 0 and report["warnings"] == 0
    assert report["rows"] == {"train": 11782, "holdout": 1320}


# -- files that are not this project's CSV, and line numbers -----------------------------------

def _lines(repo, split):
    return (repo / f"data/{split}.csv").read_bytes().split(b"\n")


def _write_bytes(repo, split, data: bytes):
    (repo / f"data/{split}.csv").write_bytes(data)


def _separator(sep: bytes):
    def breaker(repo):
        train = _rows(repo, "train")
        _write_bytes(repo, "train", train.to_csv(index=False, sep=sep.decode()).encode())
        return "data/train.csv:1", "this project's CSV files use ','"
    return breaker


def _zero_bytes(split):
    def breaker(repo):
        _write_bytes(repo, split, b"")
        return f"data/{split}.csv", "file is empty (0 bytes)"
    return breaker


def _binary_garbage(repo):
    _write_bytes(repo, "train", bytes(range(256)) * 64)
    return "data/train.csv:1", "contains NUL bytes"  # 0x00 opens line 1 (0x0a ends it)


def _nul_bytes(repo):
    lines = _lines(repo, "train")
    lines.insert(12, b"train-x,\x00\x00\x00,offensive,manual")
    _write_bytes(repo, "train", b"\n".join(lines))
    return "data/train.csv:13", "contains NUL bytes"


def _latin1_row(repo):
    lines = _lines(repo, "train")
    lines.insert(40, "train-x,caf\u00e9 au lait,not-offensive,manual".encode("latin-1"))
    _write_bytes(repo, "train", b"\n".join(lines))
    return "data/train.csv:41", "is not UTF-8"


def _too_many_fields(repo):
    lines = _lines(repo, "train")
    lines.insert(20, b"train-x,some text,not-offensive,manual,surplus")
    _write_bytes(repo, "train", b"\n".join(lines))
    return "data/train.csv:21", "5 fields but the header has 4"


def _unclosed_quote(repo):
    lines = _lines(repo, "train")
    lines.insert(30, b'train-x,"this quote never closes,not-offensive,manual')
    _write_bytes(repo, "train", b"\n".join(lines))
    return "data/train.csv:31", "unclosed or stray quote"


MALFORMED = {
    "semicolon": _separator(b";"),
    "tab": _separator(b"\t"),
    "empty-train": _zero_bytes("train"),
    "empty-holdout": _zero_bytes("holdout"),
    "binary": _binary_garbage,
    "nul-bytes": _nul_bytes,
    "latin-1": _latin1_row,
    "too-many-fields": _too_many_fields,
    "unclosed-quote": _unclosed_quote,
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_is_a_finding_with_file_and_line_never_a_traceback(fresh_repo, case):
    where, message = MALFORMED[case](fresh_repo)
    result = pipelines_cli(["validate"], fresh_repo, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    assert f"ERROR [unreadable_file] {where}" in output and message in output, output[-2000:]
    report = json.loads((fresh_repo / "reports/validation.json").read_text())
    assert report["passed"] is False and report["by_rule"]["unreadable_file"] == 1


def _break_empty_split(repo):
    _write_bytes(repo, "train", _lines(repo, "train")[0] + b"\n")
    return "data/train.csv", "no rows after the header"


def _break_duplicate_id(repo):
    train = _rows(repo, "train")
    train.loc[5, "id"] = train.loc[0, "id"]
    _write(repo, "train", train)
    return "data/train.csv:7", f"id {train.loc[0, 'id']!r} already used on line 2"


@pytest.mark.parametrize("rule", ["empty_split", "duplicate_id"])
def test_empty_split_and_duplicate_ids_are_rules_with_a_severity(fresh_repo, rule):
    where, message = {"empty_split": _break_empty_split,
                      "duplicate_id": _break_duplicate_id}[rule](fresh_repo)
    failed = pipelines_cli(["validate"], fresh_repo, check=False)
    assert failed.returncode != 0
    assert f"ERROR [{rule}] {where}: {message}" in failed.stdout
    _set_severity(fresh_repo, rule, "warn")
    warned = pipelines_cli(["validate"], fresh_repo, check=False)
    assert warned.returncode == 0 and f"WARN [{rule}] {where}" in warned.stdout


def test_findings_name_the_file_line_after_cells_with_quoted_newlines(fresh_repo):
    train = _rows(fresh_repo, "train")
    train.loc[3, "text"] = "a text\nthat spans\nthree lines"
    train.loc[50, "label"] = "spam"
    _write(fresh_repo, "train", train)
    lines = (fresh_repo / "data/train.csv").read_text().split("\n")
    expected = next(i for i, line in enumerate(lines, start=1) if ",spam," in line)
    assert expected == 50 + 2 + 2  # the header, 0-based index, and two extra physical lines
    result = pipelines_cli(["validate"], fresh_repo, check=False)
    assert f"ERROR [unknown_label] data/train.csv:{expected}:" in result.stdout


def test_a_byte_order_mark_does_not_hide_duplicate_ids(fresh_repo):
    """Spreadsheet exports start with a UTF-8 BOM; read as part of the first column's name it
    hid the `id` column from duplicate_id while pandas, stripping it, trained on both rows."""
    _break_duplicate_id(fresh_repo)
    path = fresh_repo / "data/train.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    result = pipelines_cli(["validate"], fresh_repo, check=False)
    assert result.returncode != 0
    assert "ERROR [duplicate_id] data/train.csv:7: id 'train-000000' already used on line 2" \
        in result.stdout


@pytest.mark.parametrize("character", ["\x1b", "\x07", "\x7f", "\x85"])
def test_control_characters_in_a_text_are_an_error_with_file_and_line(fresh_repo, character):
    train = _rows(fresh_repo, "train")
    train.loc[12, "text"] = f"look {character}[2Jhere"
    train.loc[13, "text"] = "=HYPERLINK(\"http://x\")\ttab and\nline breaks stay allowed"
    _write(fresh_repo, "train", train)
    result = pipelines_cli(["validate"], fresh_repo, check=False)
    assert result.returncode != 0
    assert (f"ERROR [control_characters] data/train.csv:14: text contains control character(s) "
            f"U+{ord(character):04X}") in result.stdout
    report = json.loads((fresh_repo / "reports/validation.json").read_text())
    assert report["by_rule"] == {"control_characters": 1}


def test_streaming_in_small_chunks_finds_exactly_what_one_chunk_finds(fresh_repo, monkeypatch):
    """Rows compared across chunk borders (duplicates, ids, leaks) are found wherever they
    fall: a 7-row chunk gives the same report as the whole file at once."""
    from pipelines.analysis.data_checks import validate_dataset
    from pipelines.runtime.params import load_params

    _break_duplicate_id(fresh_repo)
    _break_conflicting_labels(fresh_repo)
    _break_holdout_leak(fresh_repo)
    _break_exact_duplicate(fresh_repo)
    _break_normalised_duplicate(fresh_repo)
    _break_unknown_label(fresh_repo)
    monkeypatch.chdir(fresh_repo)
    params = load_params("params.yaml")
    small, whole = (validate_dataset(params, chunk_rows=n) for n in (7, 10**7))
    assert small == whole
    assert set(whole["by_rule"]) >= {"duplicate_id", "conflicting_labels", "holdout_leak",
                                     "exact_duplicate", "normalised_duplicate", "unknown_label"}


FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3",
            "@SUM(A1:A9)", "\t=1+1", "\r=1+1"]


def test_suspicious_rows_csv_for_people_neutralises_formula_prefixes(tmp_path):
    """reports/suspicious.csv is opened in spreadsheets: a cell from data that starts like a
    formula is text there (leading apostrophe), control characters are replaced; the data
    splits themselves are never rewritten (docs/data.md)."""
    import csv

    from pipelines.stages.validate import write_suspicious_csv

    rows = [{"file": "data/train.csv", "line": i + 2, "id": f, "label": "offensive",
             "suggested": f, "confidence": 0.9, "text": f + " and \x1b[2J"}
            for i, f in enumerate(FORMULAS)]
    path = tmp_path / "suspicious.csv"
    write_suspicious_csv({"label_noise": {"suspicious": rows}}, path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        read = list(csv.DictReader(handle))
    assert [r["id"] for r in read] == ["'" + f for f in FORMULAS]
    assert [r["text"] for r in read] == ["'" + f + " and \ufffd[2J" for f in FORMULAS]
    assert [r["line"] for r in read] == [str(i + 2) for i in range(len(FORMULAS))]
    write_suspicious_csv({"label_noise": None}, path)  # skipped rule: the header alone
    assert path.read_text(encoding="utf-8-sig").splitlines() == [
        "file,line,id,label,suggested,confidence,text"]
