"""What each part of the loop may import ([tool.importlinter] in pyproject.toml), and the Bento
ships exactly what the service imports."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from service.bento import SERVICE_PACKAGES, TORCH_PATH_PACKAGES
from tests.conftest import ROOT
from tests.pipeline.test_stage_deps import import_closure, stage_entry


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_bento_includes_every_project_module_the_service_imports():
    spec = yaml.safe_load((ROOT / "bentofile.yaml").read_text(encoding="utf-8"))
    included = {path.relative_to(ROOT) for pattern in spec["include"]
                for path in ROOT.glob(pattern) if path.suffix == ".py"}
    needed = set()
    for module in (ROOT / "service").glob("*.py"):
        needed |= import_closure(ROOT, module.relative_to(ROOT))
    assert needed - included == set()
    # and nothing of the pipeline beyond its runtime
    assert all(p == Path("pipelines/__init__.py") or p.parts[:2] == ("pipelines", "runtime")
               for p in included if p.parts[0] == "pipelines")


def _third_party_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"pipelines", "service", "loadtests", "tests"}


def _with_requirements(distributions: set[str]) -> set[str]:
    """The distributions and everything they require, transitively (as installed here)."""
    seen, todo = set(), [canonicalize_name(d) for d in distributions]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for req in metadata.requires(name) or []:
            parsed = Requirement(req)
            if parsed.marker is None or parsed.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(parsed.name))
    return seen


def test_the_bento_image_installs_every_package_the_service_imports():
    modules = set()
    for module in [*(ROOT / "service").rglob("*.py")]:
        if module.name in ("screenshot.py", "browser.py"):  # docs tooling, never served
            continue
        for path in import_closure(ROOT, module.relative_to(ROOT)):
            modules |= _third_party_imports(ROOT / path)
    by_module = metadata.packages_distributions()
    needed = {canonicalize_name(by_module[m][0]) for m in modules}
    installed = _with_requirements(set(SERVICE_PACKAGES))
    # the torch paths are left out of the image on purpose (tests/k8s/test_image.py serves it)
    assert needed - installed - {canonicalize_name(p) for p in TORCH_PATH_PACKAGES} == set()


AREAS = {"runtime": "pipelines.runtime", "core": "pipelines.core", "stages": "pipelines.stages",
         "analysis": "pipelines.analysis", "training": "pipelines.training",
         "deploy": "pipelines.deploy", "release": "pipelines.release", "ci": "pipelines.ci",
         "monitor": "pipelines.monitor", "service": "service", "loadtests": "loadtests"}


def _documented_imports() -> dict[str, set[str]]:
    """docs/architecture.md's table: the module of each folder -> the areas it may import."""
    text = (ROOT / "docs/architecture.md").read_text(encoding="utf-8")
    table = text.split("## What each folder may import", 1)[1].split("\n\n")[2]
    allowed = {}
    for row in table.splitlines()[2:]:
        folder, may, _why = (cell.strip() for cell in row.strip("|").split("|"))
        area = folder.strip("`/").removeprefix("pipelines/")
        words = {w.strip(" ,") for w in may.split()}
        allowed[AREAS[area]] = {AREAS[w] for w in words if w in AREAS} | {AREAS[area]}
    return allowed


def test_the_architecture_table_and_the_import_contracts_agree():
    """Each folder's contract forbids exactly the project's other areas the doc does not allow
    (the CLI, which registers every area's commands, is forbidden to all)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    forbidden = {c["source_modules"][0]: set(c["forbidden_modules"]) for c in contracts
                 if c["type"] == "forbidden"}
    documented = _documented_imports()
    assert set(documented) == set(forbidden) == set(AREAS.values())
    project = set(AREAS.values()) | {"pipelines.cli"}
    for module, allowed in documented.items():
        assert forbidden[module] & project == project - allowed, module


def test_stages_holds_the_stage_entry_points_and_nothing_else():
    """Every module of pipelines/stages/ is one dvc.yaml runs (cli.py registers them), and the
    independence contract covers each: a library module belongs in analysis/ or training/."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    entries = {stage_entry(stage.get("do", stage)["cmd"]) for stage in spec.values()}
    present = {path.relative_to(ROOT) for path in (ROOT / "pipelines/stages").glob("*.py")}
    assert present - {Path("pipelines/stages/__init__.py"), Path("pipelines/stages/cli.py")} \
        == entries
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    independent = next(c["modules"] for c in config["tool"]["importlinter"]["contracts"]
                       if c["type"] == "independence" and "pipelines.stages.train" in c["modules"])
    assert {Path(*m.split(".")).with_suffix(".py") for m in independent} == entries
