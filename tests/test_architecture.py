"""What each part of the loop may import ([tool.importlinter] in pyproject.toml), and the Bento
ships exactly what the service imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT
from tests.pipeline.test_stage_deps import import_closure


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
    # and nothing of the pipeline beyond its core
    assert all(p == Path("pipelines/__init__.py") or p.parts[:2] == ("pipelines", "core")
               for p in included if p.parts[0] == "pipelines")
