"""The load-test gate: Locust's aggregate figures against params.yaml and production's run."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pipelines.runtime.params import LoadtestParams


def read_locust_stats(stats_csv: Path) -> dict[str, float]:
    """requests, failures, requests/s, p50 and p95 (ms) of Locust's Aggregated row."""
    with stats_csv.open(encoding="utf-8", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    if "Aggregated" not in rows:
        raise ValueError(f"{stats_csv}: no Aggregated row (did Locust run any request?)")
    agg = rows["Aggregated"]
    requests = int(agg["Request Count"])
    failures = int(agg["Failure Count"])
    return {"requests": requests, "failures": failures,
            "error_ratio": failures / requests if requests else 1.0,
            "rps": float(agg["Requests/s"]), "p50_ms": float(agg["50%"]),
            "p95_ms": float(agg["95%"])}


def read_production_record(path: Path | None) -> dict[str, Any] | None:
    """Production's recorded load-test summary, or None when there is none yet."""
    if path is None or not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def judge(stats: dict[str, float], limits: LoadtestParams,
          production: dict[str, Any] | None) -> dict[str, Any]:
    """Every check with its value, limit and verdict; passed only if all pass."""
    checks = [
        {"check": "requests/s", "value": stats["rps"], "limit": f">= {limits.min_rps}",
         "passed": stats["rps"] >= limits.min_rps},
        {"check": "p95 latency (ms)", "value": stats["p95_ms"], "limit": f"<= {limits.max_p95_ms}",
         "passed": stats["p95_ms"] <= limits.max_p95_ms},
        {"check": "error ratio", "value": round(stats["error_ratio"], 4),
         "limit": f"<= {limits.max_error_ratio}",
         "passed": stats["error_ratio"] <= limits.max_error_ratio},
    ]
    if production is None:
        basis = "absolute thresholds only: no production load-test record yet"
    else:
        prod_p95 = float(production["stats"]["p95_ms"])
        allowed = prod_p95 * (1 + limits.max_p95_regression)
        basis = (f"absolute thresholds and production {production.get('model_version', '?')} "
                 f"(p95 {prod_p95:.0f} ms)")
        checks.append({"check": "p95 vs production (ms)", "value": stats["p95_ms"],
                       "limit": f"<= {allowed:.0f} (+{limits.max_p95_regression:.0%})",
                       "passed": stats["p95_ms"] <= allowed})
    return {"passed": all(c["passed"] for c in checks), "basis": basis, "checks": checks}


def summary_markdown(summary: dict[str, Any]) -> str:
    """The gate's result as a markdown section for the pull-request body."""
    verdict = "PASSED" if summary["verdict"]["passed"] else "FAILED"
    s = summary["stats"]
    lines = [f"### Load test: {verdict}", "",
             f"Model `{summary['model_version']}`, {summary['users']} users for "
             f"{summary['duration_s']} s: {s['requests']} requests, {s['rps']:.1f} req/s, "
             f"p50 {s['p50_ms']:.0f} ms, p95 {s['p95_ms']:.0f} ms, "
             f"{s['failures']} failures.", "",
             f"Judged on {summary['verdict']['basis']}.", "",
             "| check | value | limit | result |", "|---|---|---|---|"]
    for c in summary["verdict"]["checks"]:
        lines.append(f"| {c['check']} | {c['value']:.4g} | {c['limit']} | "
                     f"{'pass' if c['passed'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def write_summary(out_dir: Path, summary: dict[str, Any]) -> tuple[Path, Path]:
    """Write summary.json and summary.md next to Locust's CSV and HTML reports."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "summary.json", out_dir / "summary.md"
    json_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(summary_markdown(summary), encoding="utf-8")
    return json_path, md_path
