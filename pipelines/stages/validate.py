"""validate stage: check the training data and the frozen holdout before anything trains on them
(the rules are pipelines/analysis/data_checks.py); write the report, the suspicious rows and the
gate record training waits on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.analysis.data_checks import Finding, validate_dataset
from pipelines.core.cli import ParamsOpt, run_as_script
from pipelines.core.data import DataError
from pipelines.core.spreadsheet import write_for_people
from pipelines.runtime.params import PARAMS_FILE, Params, load_params


def write_gate(report: dict, gate_path: Path) -> None:
    """What training waits on: the data versions that passed. Unlike the report it does not
    change when production does (a promotion), so the run on main after a merge retrains
    nothing."""
    gate = {key: report[key] for key in ("dataset_md5", "holdout_md5", "passed")}
    gate_path.write_text(json.dumps(gate, indent=2) + "\n", encoding="utf-8")


SUSPICIOUS_COLUMNS = ["file", "line", "id", "label", "suggested", "confidence", "text"]


def write_suspicious_csv(report: dict, path: Path) -> None:
    """label_noise's suspicious rows for review in a spreadsheet (formula prefixes made inert)."""
    write_for_people(path, SUSPICIOUS_COLUMNS,
                     (report.get("label_noise") or {}).get("suspicious") or [])


def run(params: Params, report_path: Path | str, gate_path: Path | str | None = None) -> dict:
    """Validate, write the JSON report, the suspicious rows as CSV beside it (and, when it
    passed, the gate record training depends on), print findings; raise DataError if any rule
    failed."""
    report = validate_dataset(params)
    report_path = Path(report_path)
    gate_path = Path(gate_path or report_path.with_name("validated.json"))
    gate_path.unlink(missing_ok=True)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    write_suspicious_csv(report, report_path.with_name("suspicious.csv"))
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
