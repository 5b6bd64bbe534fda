"""The schema of params.yaml: one typed place for every pipeline setting and gate."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.runtime.errors import UsageError
from pipelines.runtime.records import field_errors

PARAMS_FILE = Path("params.yaml")
Severity = Literal["error", "warn", "off"]
# Behavioural check kinds whose results are flip rates (a floor is a maximum); the others give
# pass rates (a floor is a minimum).
FLIP_RATE_KINDS = ("invariance", "evasion", "term_swap")


class ParamsError(UsageError):
    """params.yaml is unreadable, has an unknown key or a value of the wrong type."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class DataParams(_Strict):
    labels: list[str] = Field(min_length=2)
    train_file: str
    holdout_file: str
    max_train_rows: int | None = Field(default=None, gt=0)
    max_holdout_rows: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _labels_unique(self) -> DataParams:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be unique, got {self.labels}")
        return self


class SeverityParams(_Strict):
    schema_: Severity = Field(alias="schema")
    unknown_label: Severity
    empty_text: Severity
    too_long: Severity
    exact_duplicate: Severity
    normalised_duplicate: Severity
    conflicting_labels: Severity
    holdout_leak: Severity
    balance_shift: Severity
    empty_split: Severity
    duplicate_id: Severity
    control_characters: Severity
    feedback_unproven: Severity
    label_noise: Severity


class LabelNoiseParams(_Strict):
    max_share: float = Field(ge=0, le=1)
    confidence: float = Field(gt=0, lt=1)
    folds: int = Field(ge=2)
    min_cv_rows: int = Field(gt=0)
    min_reference_rows: int = Field(gt=0)
    min_slice_rows: int = Field(gt=0)
    max_listed: int = Field(ge=0)
    bootstrap_samples: int = Field(gt=0)
    seed: int
    max_rows: int = Field(gt=0)


class ValidateParams(_Strict):
    max_chars: int = Field(gt=0)
    max_balance_shift: float = Field(ge=0, le=1)
    label_noise: LabelNoiseParams
    severity: SeverityParams


class RandomConfig(_Strict):
    hidden_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)


class TrainParams(_Strict):
    backbone: str
    init: Literal["pretrained", "random"]
    random_config: RandomConfig
    max_length: int = Field(gt=0, le=512)
    epochs: float = Field(gt=0)
    batch_size: int = Field(gt=0)
    learning_rate: float = Field(gt=0)
    warmup_ratio: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    class_weights: Literal["balanced", "none"]
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    dev_fraction: float = Field(default=0.1, ge=0, lt=1)
    early_stopping_patience: int = Field(default=1, ge=0)
    tune_threshold: bool = True
    tfidf_blend: bool = True
    seed: int


class BaselineParams(_Strict):
    word_ngrams: tuple[int, int]
    char_ngrams: tuple[int, int]
    max_features: int = Field(gt=0)
    C: float = Field(gt=0)
    class_weight: Literal["balanced", "none"]
    seed: int


class InvarianceCheck(_Strict):
    """Label-preserving edits (pipelines/analysis/behaviour.py INVARIANCES) should not flip the
    label: one result `<check>_<perturbation>` each, a flip rate."""

    kind: Literal["invariance"]
    perturbations: list[str] = Field(min_length=1)


class EvasionCheck(_Strict):
    """Disguised positives the model catches should stay caught (behaviour.py EVASIONS): one
    result `<check>_<disguise>` each, a flip rate."""

    kind: Literal["evasion"]
    disguises: list[str] = Field(min_length=1)


class TermSwapCheck(_Strict):
    """Texts naming one of `terms` (whole word, any case) get the next term of the list
    instead; the label should not flip: one result `<check>`, a flip rate."""

    kind: Literal["term_swap"]
    terms: list[str] = Field(min_length=2)


class DirectionalCheck(_Strict):
    """Each template (`{text}`: a text the model does not flag; `{term}`: each of `terms`)
    should raise the positive score: one result `<check>`, a pass rate."""

    kind: Literal["directional"]
    templates: list[str] = Field(min_length=1)
    terms: list[str] = []

    @model_validator(mode="after")
    def _placeholders(self) -> DirectionalCheck:
        _check_templates(self.templates, self.terms, need_text=True)
        return self


class TemplateCheck(_Strict):
    """Texts written from templates (`{term}`: each of `terms`) should get the label `expect`:
    one result `<check>`, a pass rate (a minimum-functionality test)."""

    kind: Literal["template"]
    templates: list[str] = Field(min_length=1)
    terms: list[str] = []
    expect: str

    @model_validator(mode="after")
    def _placeholders(self) -> TemplateCheck:
        _check_templates(self.templates, self.terms, need_text=False)
        return self


def _check_templates(templates: list[str], terms: list[str], need_text: bool) -> None:
    for template in templates:
        if need_text and "{text}" not in template:
            raise ValueError(f"template {template!r} has no {{text}} placeholder")
        if "{term}" in template and not terms:
            raise ValueError(f"template {template!r} uses {{term}} but `terms` is empty")


BehaviourCheck = Annotated[InvarianceCheck | EvasionCheck | TermSwapCheck | DirectionalCheck
                           | TemplateCheck, Field(discriminator="kind")]


class BehaviourParams(_Strict):
    """The task's behavioural checks: which run and their lexicons (their floors are
    gate.floors.behaviour). Part of the task definition: docs/tasks.md."""

    written_for: list[str] = Field(min_length=2)
    sample_size: int = Field(gt=0)
    checks: dict[str, BehaviourCheck]

    @model_validator(mode="after")
    def _names(self) -> BehaviourParams:
        for name in self.checks:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"check name {name!r}: use lower-case letters, digits and _")
        # Results are named <check> or <check>_<item>: no name may be another's prefix.
        for a in self.checks:
            for b in self.checks:
                if a != b and b.startswith(a + "_"):
                    raise ValueError(f"check names {a!r} and {b!r}: results of {a!r} are named "
                                     f"{a}_<item>, so {b!r} would be read as one; rename it")
        return self


class EvaluateParams(_Strict):
    batch_size: int = Field(gt=0)
    slices: dict[str, str]
    behaviour: BehaviourParams


class CompareParams(_Strict):
    bootstrap_samples: int = Field(gt=0)
    confidence: float = Field(gt=0, lt=1)
    seed: int
    max_flips: int = Field(ge=0)
    mask_flip_text: bool
    drift_sample_rows: int = Field(gt=0)
    drift_min_effect: float = Field(gt=0)
    drift_min_label_effect: float = Field(gt=0)
    drift_significance: float = Field(gt=0, lt=1)


class FloorParams(_Strict):
    macro_f1: float = Field(ge=0, le=1)
    roc_auc: float = Field(ge=0, le=1)
    # Per check of evaluate.behaviour.checks: the highest flip rate or the lowest pass rate
    # (which one follows from the check's kind).
    behaviour: dict[str, Annotated[float, Field(ge=0, le=1)]]


class GateParams(_Strict):
    macro_f1_margin: float = Field(ge=0, le=1)
    slice_margin: float = Field(ge=0, le=1)
    protected_slices: list[str]
    min_slice_rows: int = Field(gt=0)
    behaviour_margin: float = Field(ge=0, le=1)
    significance: float = Field(gt=0, lt=1)
    floors: FloorParams


class ServeParams(_Strict):
    """Defaults of the moderation service; env MODERATION_<KEY> overrides each key."""

    model_dir: str | None = None
    max_chars: int = Field(gt=0)
    max_texts: int = Field(gt=0)
    max_body_bytes: int = Field(gt=0)
    max_concurrency: int = Field(gt=0)
    retry_after_s: int = Field(gt=0)
    body_timeout_s: float = Field(gt=0)
    max_header_bytes: int = Field(gt=0)
    max_headers: int = Field(gt=0)
    header_timeout_s: float = Field(gt=0)
    max_pending_connections: int = Field(gt=0)
    max_queue_ms: int = Field(gt=0)
    drain_timeout_s: int = Field(gt=0)
    max_batch_size: int = Field(gt=0)
    accel: Literal["auto", "none", "bf16", "int8", "onnx", "onnx-int8"]
    torch_threads: int = Field(gt=0)
    log_text: Literal["text", "hash", "sample"]
    log_text_share: float = Field(default=0.05, ge=0, le=1)
    log_text_uncertain: float = Field(default=0.15, ge=0, le=0.5)
    log_text_retention_days: float = Field(default=30, gt=0)
    db_url: str
    log_queue: int = Field(gt=0)
    shadow_url: str = ""
    shadow_model_dir: str = ""
    shadow_queue: int = Field(gt=0)


class LoadtestParams(_Strict):
    users: int = Field(gt=0)
    spawn_rate: float = Field(gt=0)
    duration_s: int = Field(gt=0)
    min_rps: float = Field(ge=0)
    max_p95_ms: float = Field(gt=0)
    max_error_ratio: float = Field(ge=0, le=1)
    max_p95_regression: float = Field(ge=0)


class FeedbackParams(_Strict):
    """Review UI and export of corrected labels (service/review, pipelines/monitor/feedback.py)."""

    review_token: str = ""
    host: str
    port: int = Field(gt=0, lt=65536)
    page_size: int = Field(gt=0, le=500)
    cookie_secure: Literal["auto", "always", "never"]
    branch_prefix: str = Field(min_length=1)
    source: str = Field(min_length=1)
    provenance_file: str = Field(min_length=1)
    validation_report: str = Field(default="reports/validation.json", min_length=1)
    allowed_hosts: list[str] = Field(default=["127.0.0.1", "localhost", "::1"], min_length=1)
    max_failed_logins_per_client: int = Field(default=10, gt=0)
    max_failed_logins: int = Field(default=100, gt=0)
    failed_login_window_s: int = Field(default=300, gt=0)


class Params(_Strict):
    data: DataParams
    validate_: ValidateParams = Field(alias="validate")
    train: TrainParams
    baseline: BaselineParams
    evaluate: EvaluateParams
    serve: ServeParams
    loadtest: LoadtestParams
    compare: CompareParams
    gate: GateParams
    feedback: FeedbackParams

    @model_validator(mode="after")
    def _protected_slices_exist(self) -> Params:
        unknown = [s for s in self.gate.protected_slices if s not in self.evaluate.slices]
        if unknown:
            raise ValueError(f"gate.protected_slices {unknown} are not in evaluate.slices")
        return self

    @model_validator(mode="after")
    def _behaviour_floors_match_checks(self) -> Params:
        checks, floors = self.evaluate.behaviour.checks, self.gate.floors.behaviour
        problems = [f"gate.floors.behaviour.{name}: missing: the check "
                    f"evaluate.behaviour.checks.{name} has no floor; add `{name}: <"
                    + ("max flip rate" if check.kind in FLIP_RATE_KINDS else "min pass rate")
                    + ">` (or remove the check)"
                    for name, check in checks.items() if name not in floors]
        problems += [f"gate.floors.behaviour.{name}: no check evaluate.behaviour.checks.{name} "
                     "is declared; remove the floor (or declare the check)"
                     for name in floors if name not in checks]
        problems += [f"evaluate.behaviour.checks.{name}.expect: {check.expect!r} is not one of "
                     f"data.labels {self.data.labels}"
                     for name, check in checks.items()
                     if isinstance(check, TemplateCheck) and check.expect not in self.data.labels]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def positive_label(self) -> str:
        return self.data.labels[-1]


def _format_error(err: ValidationError, source: Path) -> str:
    return "\n".join([f"{source}: invalid parameters",
                      *field_errors(err, " (check the spelling against params.yaml)")])


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ParamsError(f"{path}: file not found (run from the repository root)") from e
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    return raw


def parse_params(raw: dict[str, Any], source: Path = PARAMS_FILE) -> Params:
    """Validate a params mapping; errors name every offending dotted key."""
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(_format_error(e, source)) from None


def load_params(path: Path | str = PARAMS_FILE) -> Params:
    path = Path(path)
    return parse_params(read_yaml(path), path)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return base with override's keys laid over it, recursively for mappings."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_profile(profile: Path | str, params_path: Path | str = PARAMS_FILE) -> Params:
    """Rewrite params.yaml with a profile's overrides (used on throwaway clones, e.g. smoke)."""
    params_path, profile = Path(params_path), Path(profile)
    merged = deep_merge(read_yaml(params_path), read_yaml(profile))
    parsed = parse_params(merged, profile)
    params_path.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
    return parsed
