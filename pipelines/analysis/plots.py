"""Images for people: confusion matrices and precision-recall curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def confusion_png(matrix: list[list[int]], labels: list[str], title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=110)
    ax.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center",
                    color="white" if value > max(map(max, matrix)) / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=15)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def pr_curves_png(curves: dict[str, list[dict]], title: str, path: Path) -> None:
    """One precision-recall line per model name."""
    fig, ax = plt.subplots(figsize=(4.4, 3.6), dpi=110)
    for name, points in curves.items():
        ax.plot([p["recall"] for p in points], [p["precision"] for p in points], label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
