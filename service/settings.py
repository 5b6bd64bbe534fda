"""Service settings: params.yaml `serve:` defaults, each overridable by env MODERATION_<KEY>."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from pipelines.runtime.params import ParamsError, ServeParams, read_yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_PREFIX = "MODERATION_"


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self.environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self.environ.items()}


class ServeSettings(BaseSettings, ServeParams):
    """ServeParams from MODERATION_<KEY> environment variables over params.yaml's `serve:`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, case_sensitive=False,
                                      extra="forbid", frozen=True)
    environ: ClassVar[Mapping[str, str]] = os.environ

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        # The environment wins over params.yaml, passed in as the init values.
        return _EnvironSource(settings_cls, cls.environ), init_settings


def load_settings(params_file: Path | str | None = None,
                  environ: Mapping[str, str] | None = None) -> ServeParams:
    """The `serve:` section with MODERATION_* environment overrides applied and validated."""
    environ = os.environ if environ is None else environ
    path = Path(params_file or environ.get("MODERATION_PARAMS") or REPO_ROOT / "params.yaml")
    serve = dict(read_yaml(path).get("serve") or {})
    settings = type("ServeSettings", (ServeSettings,), {"environ": environ, "__module__": __name__})
    try:
        # A plain ServeParams back: the per-call class could not be pickled or compared by type.
        return ServeParams.model_validate(settings(**serve).model_dump())
    except ValidationError as e:  # pydantic's message names the key; add where it came from
        raise ParamsError(f"{path} `serve:` or {ENV_PREFIX}* environment: {e}") from None


def default_model_dir() -> Path:
    """Where the primary model is found when neither settings nor the Bento name one."""
    return REPO_ROOT / "models" / "candidate"
