"""Which file changes retrain the model: derived from dvc.yaml, params.yaml and the *.dvc pointers.

The rule: a change that can alter the trained candidate always triggers a retrain, one that cannot
never does. dvc.yaml already declares, per stage, every file a stage reads (data, config, and the
stage's own code), so the trigger paths are exactly those declarations, as DVC itself resolves
them (`${...}` from params.yaml and `vars:`, `foreach` and `matrix` expanded), with three mappings:
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

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dvc.dependency import ParamsDependency
from dvc.exceptions import DvcException
from dvc.repo import Repo
from dvc.stage import PipelineStage

from pipelines.core.production import PROMOTION_FILES
from pipelines.runtime.errors import UsageError

DVC_YAML = "dvc.yaml"
PROMOTION_WRITES = PROMOTION_FILES


class TriggerError(UsageError):
    """dvc.yaml or params.yaml cannot be resolved into trigger paths."""


@dataclass(frozen=True)
class Stage:
    name: str
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    params_files: tuple[str, ...]  # declared params files and files of interpolated values


def _dvc_stages(root: Path) -> list:
    """Every stage DVC finds under root: dvc.yaml pipeline stages and *.dvc pointer files."""
    if not (root / DVC_YAML).is_file():
        raise TriggerError(f"{root / DVC_YAML}: not found (run from the repository root)")
    try:
        with Repo(str(root), uninitialized=True) as repo:
            return list(repo.index.stages)
    except DvcException as e:
        raise TriggerError(f"DVC cannot resolve the stages under {root}: {e}") from e


def _repo_path(stage, fs_path: str) -> str:
    return PurePosixPath(os.path.relpath(fs_path, stage.repo.root_dir)).as_posix()


def resolve_stages(root: Path | str = ".", found: list | None = None) -> list[Stage]:
    """Every dvc.yaml stage as DVC resolves it, with repo-relative deps, outs and params files
    (from `found`, _dvc_stages(root) already loaded, when given)."""
    root = Path(root)
    stages = []
    for stage in _dvc_stages(root) if found is None else found:
        if not isinstance(stage, PipelineStage):
            continue
        # DVC records the values a stage interpolates (from params.yaml or a vars file) like
        # declared params: a change to them reruns the stage, so their files trigger too.
        params = [d.fs_path for d in stage.deps if isinstance(d, ParamsDependency)]
        params += [os.path.abspath(file) for file in stage.tracked_vars]
        dvcfile = _repo_path(stage, stage.path)
        stages.append(Stage(
            stage.name if dvcfile == DVC_YAML else f"{dvcfile}:{stage.name}",
            tuple(_repo_path(stage, d.fs_path) for d in stage.deps
                  if not isinstance(d, ParamsDependency)),
            tuple(_repo_path(stage, o.fs_path) for o in stage.outs),
            tuple(dict.fromkeys(_repo_path(stage, path) for path in params))))
    return stages


def dvc_pointers(root: Path | str = ".", found: list | None = None) -> dict[str, str]:
    """Map each path tracked by a *.dvc pointer file to that pointer (both repo-relative)."""
    root = Path(root)
    return {_repo_path(stage, out.fs_path): _repo_path(stage, stage.path)
            for stage in (_dvc_stages(root) if found is None else found)
            if not isinstance(stage, PipelineStage)
            for out in stage.outs}


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
    found = _dvc_stages(root)  # DVC loads the repository once for both (half a second each)
    stages = resolve_stages(root, found)
    outputs = {out for stage in stages for out in stage.outs}
    pointers = dvc_pointers(root, found)
    paths = {DVC_YAML}
    for stage in stages:
        paths.update(stage.params_files)
        for dep in stage.deps:
            _, trigger = classify_dep(dep, outputs, pointers)
            if trigger:
                paths.add(f"{trigger.rstrip('/')}/**" if (root / trigger).is_dir() else trigger)
    return sorted(paths)
