"""Service settings: params.yaml `serve:` defaults, each overridable by env MODERATION_<KEY>."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.core.params import ParamsError, ServeParams, read_yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_PREFIX = "MODERATION_"


def load_settings(params_file: Path | str | None = None,
                  environ: dict[str, str] | None = None) -> ServeParams:
    """The `serve:` section with MODERATION_* environment overrides applied and validated."""
    environ = os.environ if environ is None else environ
    path = Path(params_file or environ.get("MODERATION_PARAMS") or REPO_ROOT / "params.yaml")
    raw = dict(read_yaml(path).get("serve") or {})
    for key in ServeParams.model_fields:
        value = environ.get(ENV_PREFIX + key.upper())
        if value is not None:
            raw[key] = value
    try:
        return ServeParams.model_validate(raw)
    except Exception as e:  # pydantic's message names the key; add where it came from
        raise ParamsError(f"{path} `serve:` or {ENV_PREFIX}* environment: {e}") from None


def default_model_dir() -> Path:
    """Where the primary model is found when neither settings nor the Bento name one."""
    return REPO_ROOT / "models" / "candidate"
