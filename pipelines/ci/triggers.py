"""Which file changes retrain the model: derived from dvc.yaml, params.yaml and the *.dvc pointers.

The rule: a change that can alter the trained candidate always triggers a retrain, one that cannot
never does. dvc.yaml already declares, per stage, every file a stage reads (data, config, and the
stage's own code), so the trigger paths are exactly those declarations, with three mappings:
  - a dep inside a DVC-tracked directory (data/train.csv) becomes its pointer (data.dvc), because
    git only ever sees the pointer change;
  - a dep produced by another stage (reports/validation.json, models/candidate) is internal and
    never a trigger (it changes only as a consequence of a trigger);
  - the files a promotion rewrites (PROMOTION_WRITES) only say what the candidate is compared
    with, never what it is; triggering on them would retrain after every release merge.
dvc.yaml itself triggers (a changed stage command can alter the model); dvc.lock never does (it
is the record a retrain writes).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from pipelines.core.errors import UsageError

DVC_YAML = "dvc.yaml"
PROMOTION_WRITES = ("models/production.yaml", "models/production.dvc")
_SKIP_DIRS = {".git", ".dvc", ".venv", "node_modules", "__pycache__"}
_INTERPOLATION = re.compile(r"\$\{\s*([^}]+?)\s*\}")


class TriggerError(UsageError):
    """dvc.yaml or params.yaml cannot be resolved into trigger paths."""


@dataclass(frozen=True)
class Stage:
    name: str
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    params_files: tuple[str, ...]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as e:
        raise TriggerError(f"{path}: not found (run from the repository root)") from e
    except yaml.YAMLError as e:
        raise TriggerError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise TriggerError(f"{path}: expected a mapping at the top level")
    return raw


def _lookup(context: dict[str, Any], dotted: str, where: str) -> Any:
    value: Any = context
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise TriggerError(f"{where}: ${{{dotted}}} is not defined in params.yaml or vars")
    return value


def _interpolate(value: Any, context: dict[str, Any], where: str) -> Any:
    """Resolve ${...} the way DVC does: a whole-string reference keeps its type."""
    if isinstance(value, str):
        whole = _INTERPOLATION.fullmatch(value)
        if whole:
            return _lookup(context, whole.group(1), where)
        return _INTERPOLATION.sub(lambda m: str(_lookup(context, m.group(1), where)), value)
    if isinstance(value, list):
        return [_interpolate(v, context, where) for v in value]
    if isinstance(value, dict):
        return {_interpolate(k, context, where): _interpolate(v, context, where)
                for k, v in value.items()}
    return value


def _entry_paths(entries: list[Any] | None) -> list[str]:
    """Paths of a deps/outs/metrics/plots list, whose entries are strings or {path: options}."""
    paths = []
    for entry in entries or []:
        paths.extend([entry] if isinstance(entry, str) else list(entry))
    return [str(PurePosixPath(p)) for p in paths]


def _params_files(entries: list[Any] | None) -> list[str]:
    files = []
    for entry in entries or []:
        files.extend(["params.yaml"] if isinstance(entry, str) else list(entry))
    return files


def _expansions(name: str, body: dict[str, Any], context: dict[str, Any]):
    """(stage name, body, context) per generated stage of a plain, foreach or matrix stage."""
    where = f"{DVC_YAML}: stages.{name}"
    if "foreach" in body:
        items = _interpolate(body["foreach"], context, where)
        pairs = items.items() if isinstance(items, dict) else ((str(i), i) for i in items)
        for key, item in pairs:
            yield f"{name}@{key}", body["do"], {**context, "item": item, "key": key}
    elif "matrix" in body:
        axes = {k: _interpolate(v, context, where) for k, v in body["matrix"].items()}
        for combo in itertools.product(*axes.values()):
            item = dict(zip(axes, combo, strict=True))
            suffix = "-".join(str(v) for v in combo)
            yield f"{name}@{suffix}", body, {**context, "item": item}
    else:
        yield name, body, context


def resolve_stages(root: Path | str = ".") -> list[Stage]:
    """Every stage of dvc.yaml with ${...} resolved from params.yaml and vars."""
    root = Path(root)
    dvc = _read_yaml(root / DVC_YAML)
    params_path = root / "params.yaml"
    context = _read_yaml(params_path) if params_path.exists() else {}
    for entry in dvc.get("vars", []) or []:
        if isinstance(entry, dict):
            context = {**context, **entry}
    stages = []
    for name, body in (dvc.get("stages") or {}).items():
        for full_name, stage_body, ctx in _expansions(name, body, context):
            where = f"{DVC_YAML}: stages.{full_name}"
            resolved = _interpolate(stage_body, ctx, where)
            outs = [p for key in ("outs", "metrics", "plots")
                    for p in _entry_paths(resolved.get(key))]
            params_files = dict.fromkeys(_params_files(resolved.get("params")))
            stages.append(Stage(full_name, tuple(_entry_paths(resolved.get("deps"))),
                                tuple(outs), tuple(params_files)))
    return stages


def dvc_pointers(root: Path | str = ".") -> dict[str, str]:
    """Map each path tracked by a *.dvc pointer file to that pointer (both repo-relative)."""
    root = Path(root)
    tracked = {}
    for pointer in sorted(root.rglob("*.dvc")):
        rel = pointer.relative_to(root)
        if _SKIP_DIRS.intersection(rel.parts[:-1]) or not pointer.is_file():
            continue
        for out in _read_yaml(pointer).get("outs", []) or []:
            target = PurePosixPath(rel.parent.as_posix()) / out["path"]
            tracked[str(target).removeprefix("./")] = rel.as_posix()
    return tracked


def _within(path: str, container: str) -> bool:
    return path == container or path.startswith(container.rstrip("/") + "/")


def classify_dep(dep: str, outputs: set[str], pointers: dict[str, str]) -> tuple[str, str]:
    """Why a dep is or is not a trigger: ("internal"|"promotion"|"pointer"|"file", trigger)."""
    if any(_within(dep, out) for out in outputs):
        return "internal", ""
    if dep in PROMOTION_WRITES:
        return "promotion", ""
    for tracked, pointer in pointers.items():
        if _within(dep, tracked):
            return ("promotion", "") if pointer in PROMOTION_WRITES else ("pointer", pointer)
    return "file", dep


def retrain_trigger_paths(root: Path | str = ".") -> list[str]:
    """The `on.push.paths` of the retrain workflow, sorted."""
    root = Path(root)
    stages = resolve_stages(root)
    outputs = {out for stage in stages for out in stage.outs}
    pointers = dvc_pointers(root)
    paths = {DVC_YAML}
    for stage in stages:
        paths.update(stage.params_files)
        for dep in stage.deps:
            _, trigger = classify_dep(dep, outputs, pointers)
            if trigger:
                paths.add(f"{trigger.rstrip('/')}/**" if (root / trigger).is_dir() else trigger)
    return sorted(paths)
