"""Package the service: put the model into the repo's BentoML store and build the Bento."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from pipelines.runtime.errors import PipelineError
from pipelines.runtime.metadata import ModelMetadata
from service.settings import REPO_ROOT

BENTO_MODEL_NAME = "moderation-model"
BENTO_NAME = "moderation"
TAG_PREFIX = "bento-tag: "  # the line of the build's output that names the Bento it built
# The packages the running service imports; their pins come from requirements.lock.
SERVICE_PACKAGES = ("alembic", "bentoml", "httptools", "itsdangerous", "joblib", "Mako",
                    "ml_dtypes", "numpy", "onnx", "onnxruntime", "pandas", "prometheus_client",
                    "psycopg", "psycopg-binary", "pydantic", "pydantic-settings", "PyYAML",
                    "scikit-learn", "SQLAlchemy", "tokenizers", "uvicorn")
# Imported only on the torch paths (accel none/bf16/int8, exporting an ONNX graph at start). The
# image serves the INT8 graph the Bento carries (MODERATION_ACCEL in bentofile.yaml), so it goes
# without them: about 1 GB smaller, and no PyTorch package index needed to build it.
TORCH_PATH_PACKAGES = ("safetensors", "torch", "transformers")


class BentoBuildError(PipelineError):
    """Importing the model into the BentoML store or building the Bento failed."""


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
    """Import the model into the store and build the Bento of root; returns the Bento tag
    (version = model version + code revision). A rebuild of the same model and commit replaces
    the Bento instead of failing.

    The build runs in a fresh interpreter (`python -m service.bento`, `build_here`) with
    BENTOML_HOME set before BentoML's first use there: BentoML fixes its store at first use in a
    process, and building imports the service module of root, so in the caller's process (a test
    that already used another store, or imported `service` from another checkout) the build
    could read and write the wrong store or describe the wrong service.
    """
    version = bento_version(model_dir, root)
    requirements = root / "service" / "requirements.txt"
    requirements.write_text(service_requirements(root / "requirements.lock"), encoding="utf-8")
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home()), "BENTOML_DO_NOT_TRACK": "True"}
    result = subprocess.run([sys.executable, "-m", "service.bento", str(Path(model_dir).resolve()),
                             version, str(root)], cwd=root, env=env, capture_output=True,
                            text=True)
    tags = [line.removeprefix(TAG_PREFIX) for line in result.stdout.splitlines()
            if line.startswith(TAG_PREFIX)]
    if result.returncode != 0 or not tags:
        raise BentoBuildError(f"building the Bento of {model_dir} from {root} into "
                              f"{env['BENTOML_HOME']} failed:\n{result.stderr[-4000:]}")
    return tags[-1]


def build_here(model_dir: Path, version: str, root: Path) -> str:
    """The build through BentoML's Python API, in this process: only where BentoML has not been
    used yet (build_bento's child). Returns the Bento tag."""
    import bentoml

    import_model(model_dir)
    tag = f"{BENTO_NAME}:{version}"
    with contextlib.suppress(bentoml.exceptions.NotFound):
        bentoml.bentos.delete(tag)
    bento = bentoml.bentos.build_bentofile(str(root / "bentofile.yaml"), version=version,
                                           build_ctx=str(root))
    return str(bento.tag)


if __name__ == "__main__":  # build_bento's child: python -m service.bento MODEL_DIR VERSION ROOT
    print(f"{TAG_PREFIX}{build_here(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))}")
