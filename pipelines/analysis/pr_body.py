"""The comparison as markdown: a pull request body and a CI job summary in one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pipelines.analysis.comparison_record import Comparison
from pipelines.core.decision import Decision
from pipelines.core.markdown import code, escape
from pipelines.core.production import promotion_branch

ICONS = {"promote": "✅", "reject": "❌", "no significant change": "➖"}
HEADLINE = (("macro_f1", "macro-F1"), ("accuracy", "accuracy"), ("roc_auc", "ROC-AUC"),
            ("pr_auc", "PR-AUC"))


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _link(path: str, out_dir: Path, base: str = "") -> str:
    """Paths relative to the report folder (prefixed with base, e.g. the published artifact's
    URL), so links and images work wherever the folder is published."""
    rel = os.path.relpath(path, out_dir)
    return f"{base.rstrip('/')}/{rel}" if base else rel


def image_url(path: str, out_dir: Path, link_base: str = "",
              env: Mapping[str, str] = os.environ) -> str:
    """Where a reviewer's browser fetches an image of the body. GitHub shows no relative image
    in a pull request body, and a private repository's raw.githubusercontent.com URL needs a
    token: on Actions, the github.com URL of the file on the promotion branch (its commit carries
    the plots, pipelines/release/retrain.py), which GitHub serves to whoever may read the
    repository. With link_base, or off Actions, or for a file outside the working directory
    (the repository root under DVC): the link _link makes."""
    repository, source = env.get("GITHUB_REPOSITORY"), env.get("GITHUB_REF_NAME")
    rel = Path(os.path.relpath(Path(path).resolve(), Path.cwd().resolve()))
    if link_base or not (repository and source) or rel.parts[0] == "..":
        return _link(path, out_dir, link_base)
    server = env.get("GITHUB_SERVER_URL") or "https://github.com"
    return (f"{server.rstrip('/')}/{repository}/blob/{quote(promotion_branch(source))}/"
            f"{quote(rel.as_posix())}?raw=true")


def plot_lines(plots: dict[str, str], out_dir: Path, link_base: str = "") -> list[str]:
    """One image per plot (confusion matrices, precision-recall curves), where image_url says."""
    return [f"![{name}]({image_url(path, out_dir, link_base)})" for name, path in plots.items()]


def verdict_line(comparison: Comparison, decision: Decision) -> str:
    cand = comparison.candidate.version
    verdict = decision.verdict
    icon = ICONS[verdict]
    if decision.bootstrap:
        return (f"{icon} **{verdict.upper()}** {code(cand)}: no production model yet, judged on "
                "absolute floors only.")
    d = comparison.deltas["macro_f1"]
    why = f" (failed: {escape(', '.join(decision.failed))})" if decision.failed else ""
    return (f"{icon} **{verdict.upper()}** {code(cand)} vs production "
            f"{code(comparison.production.version)}: macro-F1 {d['delta']:+.4f} "
            f"[{d['low']:+.4f}, {d['high']:+.4f}]{why}.")


def metric_table(comparison: Comparison) -> list[str]:
    cand = comparison.candidate.metrics
    prod = comparison.production
    conf = int(round(comparison.confidence * 100))
    if prod is None:
        rows = ["| metric | candidate |", "|---|---:|"]
        rows += [f"| {label} | {_fmt(cand.get(key))} |" for key, label in HEADLINE]
        return rows
    rows = [f"| metric | production | candidate | delta | {conf}% interval |",
            "|---|---:|---:|---:|---|"]
    for key, label in HEADLINE:
        d = comparison.deltas[key]
        rows.append(f"| {label} | {_fmt(prod.metrics.get(key))} | {_fmt(cand.get(key))} | "
                    f"{d['delta']:+.4f} | [{d['low']:+.4f}, {d['high']:+.4f}] |")
    t = comparison.mcnemar
    rows.append("")
    rows.append(f"McNemar: production alone right on {t['only_production_right']} texts, "
                f"candidate alone right on {t['only_candidate_right']}; p = {t['p_value']:.4g}.")
    return rows


def slice_table(comparison: Comparison) -> list[str]:
    if comparison.production is None:
        rows = ["| slice | n | candidate macro-F1 |", "|---|---:|---:|"]
        for name, s in comparison.candidate.metrics["slices"].items():
            rows.append(f"| {code(name)} | {s['n']} | {_fmt(s['macro_f1'])} |")
        return rows
    rows = ["| slice | n | production | candidate | delta | interval |",
            "|---|---:|---:|---:|---:|---|"]
    for name, s in comparison.slices.items():
        d = s["macro_f1"]
        rows.append(f"| {code(name)} | {s['n']} | {_fmt(s.get('production'))} | "
                    f"{_fmt(s.get('candidate'))} | {d['delta']:+.4f} | "
                    f"[{d['low']:+.4f}, {d['high']:+.4f}] |")
    return rows


def behaviour_table(comparison: Comparison) -> list[str]:
    if comparison.production is None:
        rows = ["| check | candidate |", "|---|---:|"]
        for name, check in comparison.candidate.metrics["behaviour"].items():
            rows.append(f"| {code(name)} | {escape(check)} |")
        return rows
    rows = ["| check | rate | production | candidate | delta |", "|---|---|---:|---:|---:|"]
    for name, b in comparison.behaviour.items():
        rows.append(f"| {code(name)} | {escape(b['metric'])} | {_fmt(b['production'])} | "
                    f"{_fmt(b['candidate'])} | {_fmt(b['delta'])} |")
    return rows


def drift_lines(comparison: Comparison, out_dir: Path) -> list[str]:
    drift = comparison.evidently["drift"]
    if "skipped" in drift:
        return [f"Not computed: {drift['skipped']}."]
    summary = (f"**Drift flagged** in {', '.join(map(code, drift['drifted']))}." if drift["flagged"]
               else "No drift detected in the label share or the text descriptors.")
    rows = [summary, "", f"Candidate's vs production's training data "
            f"({drift['rows']['current']} vs {drift['rows']['reference']} sampled rows):", "",
            "| column | production mean | candidate mean | effect | min effect | K-S p | drifted |",
            "|---|---:|---:|---:|---:|---:|---|"]
    for name, c in drift["columns"].items():
        rows.append(f"| {code(name)} | {_fmt(c['reference_mean'])} | {_fmt(c['current_mean'])} | "
                    f"{c['value']:.3f} | {c['threshold']} | {c['p_value']:.2g} | "
                    f"{'yes' if c['drifted'] else 'no'} |")
    return rows + ["", "`label` is the share of the positive label; effect is the normed "
                   "Wasserstein distance (shift in production's standard deviations). A column "
                   "drifts at its minimum effect when the K-S test also rules out noise."]


def _share(share: dict[str, float]) -> str:
    return ", ".join(f"{escape(label)} {value:.1%}" for label, value in share.items())


def changes_lines(comparison: Comparison) -> list[str]:
    ch = comparison.changes
    if comparison.production is None:
        ds = ch["dataset"]["candidate"]
        return [f"Dataset {code(ds['md5'])}: {ds['train_rows']} training rows, label share "
                f"{_share(ds['label_share'])}."]
    prod, cand = ch["dataset"]["production"], ch["dataset"]["candidate"]
    rows = ["| | production | candidate |", "|---|---|---|",
            f"| kind | {escape(ch['kind'][0])} | {escape(ch['kind'][1])} |",
            f"| dataset md5 | {code(prod['md5'])} | {code(cand['md5'])} |",
            f"| training rows | {prod['train_rows']} | {cand['train_rows']} |",
            f"| label share | {_share(prod['label_share'])} | {_share(cand['label_share'])} |"]
    params = ch["params"]
    if "production" in params and "candidate" in params and ch["kind"][0] != ch["kind"][1]:
        rows += ["", "Different model kinds; params: production "
                 f"{escape(params['production'])}, candidate {escape(params['candidate'])}."]
    elif params:
        rows += ["", "Params changed: " + "; ".join(f"{code(k)} {escape(v[0])} → {escape(v[1])}"
                                                   for k, v in params.items())]
    else:
        rows += ["", "Same training params."]
    return rows


def _pct(share: float) -> str:
    return f"{share:.1%}"


def _estimate(found: dict) -> str:
    return f"{_pct(found['share'])} [{_pct(found['low'])}, {_pct(found['high'])}]"


def label_noise_lines(noise: dict, shown: int = 10) -> list[str]:
    """validate's estimate of wrong labels among the rows new or changed since production."""
    noise = noise or {"skipped": "not estimated by this comparison"}
    if "skipped" in noise:
        return [f"Not estimated: {noise['skipped']}."]
    reviewed = (f" {noise['reviewed_rows']} rows from the review loop are not scored: reviewers "
                "chose them because the model was unsure.") if noise.get("reviewed_rows") else ""
    if noise.get("unproven_review_rows"):
        reviewed += (f" **{noise['unproven_review_rows']} rows claim to come from the review loop "
                     "without a valid signed review record** (`feedback_unproven` in "
                     "`reports/validation.json`): they are scored like any new row.")
    if noise.get("sampled"):
        reviewed += (f" Scored a uniform sample of {noise['sampled']['changed_rows']} changed "
                     f"rows (validate.label_noise.max_rows); the interval includes the "
                     "sampling error.")
    if noise["estimate"] is None:
        return [f"No scorable rows new or changed since production's data "
                f"{code(noise['production_data'])}.{reviewed}"]
    est, conf = noise["estimate"], f"{noise['confidence']:.0%}"
    others = [f"{name.replace('_', '-')} scorer {_estimate(found)}"
              for name, found in noise["scorers"].items()
              if name != est["scorer"] and found.get("share") is not None]
    verdict = (f"**above the limit** of {_pct(noise['max_share'])} "
               f"({', '.join(map(code, noise['flagged_by']))})" if noise["flagged"]
               else f"within the limit of {_pct(noise['max_share'])}")
    rows = [f"An estimated **{_estimate(est)}** ({conf} interval) of the "
            f"{noise['changed_rows']} training rows new or changed since production's data "
            f"{code(noise['production_data'])} have wrong labels: {verdict}. Headline from the "
            f"{est['scorer'].replace('_', '-')} scorer"
            + (f"; {', '.join(others)}" if others else "") + f".{reviewed}", ""]
    slices = noise["scorers"][est["scorer"]]["slices"]
    if slices:
        rows += ["| slice | changed rows | wrong labels | interval |", "|---|---:|---:|---|"]
        rows += [f"| {code(name)} | {s['rows']} | {_pct(s['share'])} | [{_pct(s['low'])}, "
                 f"{_pct(s['high'])}] |" for name, s in slices.items()]
        rows.append("")
    if noise["suspicious"]:
        rows += [f"Most suspicious rows (confident learning, most confident first; "
                 f"{len(noise['suspicious'])} in `reports/validation.json`):", "",
                 "| row | id | label | suggested | confidence | text |",
                 "|---|---|---|---|---:|---|"]
        for r in noise["suspicious"][:shown]:
            where = code(f"{r['file']}:{r['line']}")
            rows.append(f"| {where} | {escape(r['id'])} | "
                        f"{escape(r['label'])} | {escape(r['suggested'])} | "
                        f"{r['confidence']:.2f} | {escape(r['text'], limit=100)} |")
    return rows


def flips_lines(comparison: Comparison) -> list[str]:
    flips = comparison.flips
    rows = [f"{flips['total']} holdout texts change label: the candidate fixes {flips['fixed']} "
            f"and breaks {flips['broken']}. Largest score changes"
            + (" (texts masked):" if flips["masked"] else ":"), "",
            "| id | text | actual | production | candidate |", "|---|---|---|---|---|"]
    for f in flips["shown"]:
        rows.append(f"| {escape(f['id'])} | {escape(f['text'], limit=120)} | "
                    f"{escape(f['actual'])} | {escape(f['production'])} "
                    f"({f['production_score']:.2f}) | {escape(f['candidate'])} "
                    f"({f['candidate_score']:.2f}) |")
    return rows


def render_pr_body(comparison: Comparison, decision: Decision, out_dir: Path,
                   link_base: str = "") -> str:
    """Markdown with the verdict, metrics, slices, drift, changes, flips, plots and links."""
    out_dir = Path(out_dir)
    lines = [f"## Model comparison: {verdict_line(comparison, decision)}", "",
             f"Frozen holdout {code(comparison.holdout.file)} "
             f"({comparison.holdout.rows} texts, md5 {code(comparison.holdout.md5)}).",
             "", "### Gate", ""]
    failed = [r for r in decision.reasons if not r.passed]
    passed = [r for r in decision.reasons if r.passed]
    lines += [f"- ❌ {code(r.check)}: {escape(r.message)}" for r in failed]
    lines += ["", f"<details><summary>{len(passed)} checks passed</summary>", ""]
    lines += [f"- ✅ {code(r.check)}: {escape(r.message)}" for r in passed]
    lines += ["", "</details>"]
    quality = comparison.evidently["quality"]
    if "tests" in quality:
        lines += ["", "Evidently non-inferiority tests (candidate vs production): " + ", ".join(
            f"{escape(t['description'])}: {escape(t['status'])}" for t in quality["tests"]) + "."]
    lines += ["", "### Metrics", "", *metric_table(comparison), "",
              "### Slices (macro-F1)", "", *slice_table(comparison), "",
              "### Behavioural checks", "", *behaviour_table(comparison), "",
              "### Data and params", "", *changes_lines(comparison), "",
              "### Label noise in the new data", "", *label_noise_lines(comparison.label_noise),
              ""]
    if comparison.production is not None:
        lines += ["### Training-data drift", "", *drift_lines(comparison, out_dir), "",
                  "### Prediction flips", "", *flips_lines(comparison), ""]
    lines += ["### Plots", "", *plot_lines(comparison.plots, out_dir, link_base)]
    lines += ["", "### Artifacts", "", "- decision: `decision.json`, full comparison: "
              "`comparison.json`"]
    for name, report in comparison.evidently.items():
        if "html" in report:
            html = _link(report["html"], out_dir, link_base)
            data = _link(report["json"], out_dir, link_base)
            lines.append(f"- Evidently {name}: [HTML]({html}), [JSON]({data})")
        else:
            lines.append(f"- Evidently {name}: not produced ({report['skipped']})")
    lines += ["", f"<sub>Generated by `python -m pipelines compare` in "
              f"{comparison.seconds} s.</sub>", ""]
    return "\n".join(lines)
