"""What the typed records the loop passes on share (model metadata, the gate's decision, the
production pointer): strict parsing whose errors name the file and every offending field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from pipelines.runtime.errors import PipelineError


class RecordError(PipelineError):
    """A record file (model metadata, decision) is unreadable or has a field of the wrong shape."""


class Record(BaseModel):
    """A file one step writes and a later one reads; frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


R = TypeVar("R", bound=BaseModel)


def field_errors(err: ValidationError, unknown_hint: str = "") -> list[str]:
    """One line per offending field of a pydantic error, by dotted key."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key{unknown_hint}")
        elif e["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        elif not e["loc"]:
            # A rule across fields: its message names each key (the input is everything).
            message = e["msg"].removeprefix("Value error, ")
            lines += [f"  {problem}" for problem in message.split("\n")]
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r:.200})")
    return lines


def parse_record(model: type[R], raw: Any, source: Path | str, what: str,
                 error: type[PipelineError] = RecordError) -> R:
    """raw validated as model; a mismatch raises error naming source, what and each field."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise error("\n".join([f"{source}: invalid {what}", *field_errors(e)])) from None


def read_json(path: Path, what: str, error: type[PipelineError] = RecordError) -> Any:
    """A JSON file's content; a file that is not JSON is an error naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: {what} is not valid JSON: {e}") from None


def write_json(path: Path, record: BaseModel) -> None:
    """The record as indented JSON, keys in field order (what the loaders read back)."""
    path.write_text(json.dumps(record.model_dump(mode="json"), indent=2), encoding="utf-8")
