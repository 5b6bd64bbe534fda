"""The gate's decision (reports/compare/decision.json): what `compare` writes and the release
reads to propose, or not, a promotion."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pipelines.runtime.errors import MissingFileError
from pipelines.runtime.records import Record, parse_record, read_json, write_json

COMPARE_DIR = Path("reports/compare")
DECISION_FILE = "decision.json"
PROMOTE, REJECT, NO_CHANGE = "promote", "reject", "no significant change"
Verdict = Literal["promote", "reject", "no significant change"]


class Reason(Record):
    """One gate check: its dotted name, whether it passed, and the figures behind it."""

    check: str
    passed: bool
    message: str


class Decision(Record):
    """The verdict on a candidate with every reason; production_version None: no production."""

    verdict: Verdict
    bootstrap: bool
    failed: list[str]
    reasons: list[Reason]
    candidate_version: str
    production_version: str | None

    @classmethod
    def load(cls, path: Path | str = COMPARE_DIR / DECISION_FILE) -> Decision:
        """The decision in path; a missing or malformed file names itself and what to run."""
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"{path}: no comparison yet; run `make compare` or "
                                   "`dvc repro compare`")
        return parse_record(cls, read_json(path, "decision"), path, "decision")

    def write(self, path: Path | str) -> None:
        write_json(Path(path), self)
