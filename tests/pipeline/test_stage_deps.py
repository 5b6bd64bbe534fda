"""Each DVC stage declares every project file its code imports, so caching and the retrain
triggers (derived from the deps) see a change to any of them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

PROJECT_PACKAGES = ("pipelines", "service", "loadtests")


def _module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def project_imports(root: Path, source: Path) -> set[Path]:
    """Project files one module imports (with the package __init__ files on the way)."""
    found = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] not in PROJECT_PACKAGES:
                continue
            for depth in range(1, len(parts) + 1):
                path = _module_file(root, ".".join(parts[:depth]))
                if path:
                    found.add(path.relative_to(root))
    return found


def import_closure(root: Path, entry: Path) -> set[Path]:
    seen, todo = set(), [entry]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(project_imports(root, root / path) - seen)
    return seen


def stage_entry(cmd: str) -> Path:
    """The module a stage runs: `python -m pipelines.stages.x ...` -> pipelines/stages/x.py."""
    words = cmd.split()
    assert words[:2] == ["python", "-m"], f"stage command {cmd!r} is not `python -m <module>`"
    return Path(*words[2].split(".")).with_suffix(".py")


def _empty_init(path: Path) -> bool:
    return path.name == "__init__.py" and not path.read_text(encoding="utf-8").strip()


def undeclared_code(root: Path) -> dict[str, list[str]]:
    stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    missing = {}
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        deps = {dep if isinstance(dep, str) else next(iter(dep)) for dep in stage["deps"]}
        needed = import_closure(root, stage_entry(stage["cmd"]))
        absent = sorted(str(path) for path in needed
                        if str(path) not in deps and not _empty_init(root / path))
        if absent:
            missing[name] = absent
    return missing


def test_every_stage_declares_the_code_it_imports():
    assert undeclared_code(ROOT) == {}


def test_a_removed_code_dep_is_caught(tmp_path):
    for item in ("pipelines", "service", "loadtests"):
        (tmp_path / item).symlink_to(ROOT / item)
    text = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    line = "\n      - pipelines/analysis/metrics.py\n"
    compare = text.index("\n  compare:")  # remove the compare stage's, not another stage's
    assert line in text[compare:]
    (tmp_path / "dvc.yaml").write_text(
        text[:compare] + text[compare:].replace(line, "\n", 1), encoding="utf-8")
    missing = undeclared_code(tmp_path)
    assert missing == {"compare": ["pipelines/analysis/metrics.py"]}


@pytest.mark.parametrize("module", ["pipelines.stages.compare", "pipelines.stages.train"])
def test_the_closure_follows_imports_through_other_modules(module):
    closure = import_closure(ROOT, Path(*module.split(".")).with_suffix(".py"))
    assert Path("pipelines/runtime/params.py") in closure  # imported through core.cli as well
