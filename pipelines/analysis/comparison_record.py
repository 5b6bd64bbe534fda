"""The comparison of candidate and production on the frozen holdout, as `compare` builds it and
the gate, the PR body and reports/compare/comparison.json read it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Interval = dict[str, float]  # a paired-bootstrap delta: {"delta", "low", "high"}


@dataclass(frozen=True)
class CandidateScores:
    version: str
    kind: str
    metrics: dict[str, Any]  # evaluate's metrics on the holdout (as reports/metrics/*.json)


@dataclass(frozen=True)
class ProductionScores(CandidateScores):
    bento_tag: str | None = None
    image: str | None = None


@dataclass(frozen=True)
class Holdout:
    file: str
    md5: str
    rows: int


@dataclass
class Comparison:
    """Both models' scores, and where production exists the paired statistics between them."""

    candidate: CandidateScores
    production: ProductionScores | None
    confidence: float
    holdout: Holdout
    changes: dict[str, Any]
    # validate's estimate of wrong labels in the new data (reports/validation.json)
    label_noise: dict[str, Any] = field(default_factory=dict)
    # Only with a production model (absent from the JSON without one):
    deltas: dict[str, Interval] | None = None  # headline metric -> interval
    mcnemar: dict[str, float] | None = None
    slices: dict[str, dict[str, Any]] | None = None
    behaviour: dict[str, dict[str, Any]] | None = None
    flips: dict[str, Any] | None = None
    # Filled once the reports are written:
    plots: dict[str, str] = field(default_factory=dict)
    evidently: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The layout of comparison.json (the head-to-head keys only with a production model)."""
        out = asdict(self)
        if self.production is None:
            for key in ("deltas", "mcnemar", "slices", "behaviour", "flips"):
                del out[key]
        return out
