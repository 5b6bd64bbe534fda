"""Steps of the retrain workflow that are not a stage of their own (the job summary for now)."""

from __future__ import annotations

import os
from pathlib import Path

# The markdown reports a retrain produces, in the order a reviewer reads them.
SUMMARY_REPORTS = (
    ("Comparison with production", Path("reports/compare/pr_body.md")),
    ("Load test", Path("reports/loadtest/summary.md")),
)


def job_summary(reports: tuple[tuple[str, Path], ...] = SUMMARY_REPORTS) -> str:
    """Markdown of every report that exists, and a line for each one that a failed step left out."""
    parts = ["# Retrain"]
    for title, path in reports:
        if path.exists():
            parts.append(path.read_text(encoding="utf-8").strip())
        else:
            parts.append(f"## {title}\n\n`{path}` was not produced: the step that writes it "
                         "failed or did not run (see the step log above).")
    return "\n\n".join(parts) + "\n"


def write_job_summary(out: Path | None = None) -> Path | None:
    """Append the summary to GitHub's job summary file (GITHUB_STEP_SUMMARY), or print it."""
    target = out or (Path(os.environ["GITHUB_STEP_SUMMARY"])
                     if os.environ.get("GITHUB_STEP_SUMMARY") else None)
    text = job_summary()
    if target is None:
        print(text, end="")
        return None
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(text)
    return target
