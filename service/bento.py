"""Package the service: put the model into the repo's BentoML store and build the Bento."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from pipelines.runtime.metadata import ModelMetadata
from service.settings import REPO_ROOT

BENTO_MODEL_NAME = "moderation-model"
BENTO_NAME = "moderation"
# The packages the running service imports; their pins come from requirements.lock.
SERVICE_PACKAGES = ("alembic", "bentoml", "httptools", "itsdangerous", "joblib", "Mako",
                    "ml_dtypes", "numpy", "onnx", "onnxruntime", "pandas", "prometheus_client",
                    "psycopg", "psycopg-binary", "pydantic", "pydantic-settings", "PyYAML",
                    "scikit-learn", "SQLAlchemy", "tokenizers", "uvicorn")
# Imported only on the torch paths (accel none/bf16/int8, exporting an ONNX graph at start). The
# image serves the INT8 graph the Bento carries (MODERATION_ACCEL in bentofile.yaml), so it goes
# without them: about 1 GB smaller, and no PyTorch package index needed to build it.
TORCH_PATH_PACKAGES = ("safetensors", "torch", "transformers")


def bentoml_home() -> Path:
    """The repo-local BentoML store (gitignored), unless BENTOML_HOME says otherwise."""
    return Path(os.environ.get("BENTOML_HOME", REPO_ROOT / ".bentoml"))


def service_requirements(lock: Path = REPO_ROOT / "requirements.lock") -> str:
    """The Bento's requirements: the service's packages with their requirements.lock pins."""
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.startswith("#"):
            name = line.split("==")[0].strip()
            pins[re.sub(r"[-_.]+", "-", name).lower()] = line.strip()
    missing = [p for p in SERVICE_PACKAGES if re.sub(r"[-_.]+", "-", p).lower() not in pins]
    if missing:
        raise ValueError(f"{lock}: no pin for {', '.join(missing)}")
    lines = [pins[re.sub(r"[-_.]+", "-", p).lower()] for p in SERVICE_PACKAGES]
    return "\n".join(["# Generated from requirements.lock by service/bento.py; do not edit.",
                      *lines]) + "\n"


def import_model(model_dir: Path) -> str:
    """Copy a trained model directory into the BentoML store as moderation-model:<version>."""
    os.environ.setdefault("BENTOML_HOME", str(bentoml_home()))
    import bentoml

    metadata = ModelMetadata.load(model_dir)
    tag = f"{BENTO_MODEL_NAME}:{metadata.version}"
    # Re-import: the same version name may hold other weights.
    with contextlib.suppress(bentoml.exceptions.NotFound):
        bentoml.models.delete(tag)
    labels = {"kind": metadata.kind, "dataset_md5": metadata.dataset.md5}
    with bentoml.models.create(tag, labels=labels,
                               metadata={"version": metadata.version}) as model:
        shutil.copytree(model_dir, model.path, dirs_exist_ok=True)
        if metadata.kind == "transformer":
            # Ahead of time: the ONNX paths then start without torch or transformers.
            from service.onnx_runtime import prepare_onnx

            prepare_onnx(Path(model.path), metadata)
    return tag


def code_revision(root: Path) -> str:
    """Short git commit of the service code, for the Bento (and image) tag."""
    result = subprocess.run(["git", "rev-parse", "--short=8", "HEAD"], cwd=root,
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "nogit"


def bento_version(model_dir: Path, root: Path = REPO_ROOT) -> str:
    """The Bento's version, also the image tag: model version + code revision."""
    return f"{ModelMetadata.load(model_dir).version}-{code_revision(root)}"


def build_bento(model_dir: Path, root: Path = REPO_ROOT) -> str:
    """Import the model and run `bentoml build`; returns the Bento tag (version = model version).

    Both run in child processes: BentoML fixes its store at first use in a process, so an
    in-process import could land in another store than the one BENTOML_HOME names now.
    """
    version = bento_version(model_dir, root)
    requirements = root / "service" / "requirements.txt"
    requirements.write_text(service_requirements(root / "requirements.lock"), encoding="utf-8")
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home()), "BENTOML_DO_NOT_TRACK": "True"}
    imported = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from service.bento import import_model; import_model(Path(sys.argv[1]))",
         str(Path(model_dir).resolve())], cwd=root, env=env, capture_output=True, text=True)
    if imported.returncode != 0:
        raise RuntimeError(f"importing {model_dir} into the BentoML store failed:\n"
                           f"{imported.stderr}")
    # Rebuilding the same model and commit replaces the Bento instead of failing.
    subprocess.run([sys.executable, "-m", "bentoml", "delete", "-y", f"{BENTO_NAME}:{version}"],
                   cwd=root, env=env, capture_output=True)
    result = subprocess.run([sys.executable, "-m", "bentoml", "build", "--version", version,
                             "--output", "tag", str(root)], cwd=root, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"bentoml build failed:\n{result.stdout}\n{result.stderr}")
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    return tag
