"""CSV files written for people to open in a spreadsheet, with values from data made inert.

Which CSV files are for people (docs/data.md, "CSV files for people"): `reports/suspicious.csv`
(validate's suspicious rows, to review in a spreadsheet). The data splits, the drift sample and
the evaluation predictions are read back by code and keep every text byte for byte (a changed
text would change the model, the provenance hashes and the drift measures); open those with
the spreadsheet's text import, never by double-click.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# A cell starting with one of these is a formula (or becomes one) in Excel, LibreOffice and
# Google Sheets; a leading apostrophe makes it text and is not shown.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def cell(value: Any) -> Any:
    """A value safe to open: text that would start a formula gets a leading `'`, control
    characters other than line breaks become U+FFFD. Numbers stay numbers."""
    if not isinstance(value, str):
        return value
    text = "".join("\ufffd" if unicodedata.category(c) == "Cc" and c not in "\n\r\t" else c
                   for c in value)
    return "'" + text if text.startswith(FORMULA_START) else text


def write_for_people(path: Path | str, columns: list[str], rows: Iterable[dict[str, Any]]
                     ) -> None:
    """Write rows (dicts) as a UTF-8 CSV with a BOM (so spreadsheets detect UTF-8), every cell
    through `cell`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([cell(row.get(c)) for c in columns])
