"""Report figures (matplotlib, Agg backend). Plots never compute statistics beyond mean/min/max.

Each function takes data and an optional `ax` and returns the axes; styling is in `_style`.
`save_figure` writes PNG and PDF with fixed metadata so that the same data give the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on workers and CI; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

VAL_COLOR = "#1f77b4"
TEST_COLOR = "#d62728"


def _style(ax: Axes, title: str, xlabel: str, ylabel: str) -> Axes:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return ax


def _new_ax(ax: Axes | None, width: float, height: float) -> Axes:
    if ax is not None:
        return ax
    fig = plt.figure(figsize=(width, height))
    return fig.add_subplot(1, 1, 1)


def plot_f1_distribution(
    val_f1: Mapping[str, np.ndarray], test_f1: Mapping[str, np.ndarray], title: str = "F1 per variant",
    ax: Axes | None = None,
) -> Axes:
    """Points (one per seed) over a box, validation and test side by side, per variant.

    Args:
        val_f1: variant name -> validation F1 of its runs (%), shape (n_runs,); plotted in this order.
        test_f1: variant name -> test F1 (%), shape (n_runs,).
    """
    names = list(val_f1)
    ax = _new_ax(ax, max(5.0, 1.3 * len(names) + 1.5), 4.0)
    offsets = {"validation": -0.18, "test": 0.18}
    for split, data, color in (("validation", val_f1, VAL_COLOR), ("test", test_f1, TEST_COLOR)):
        positions = np.arange(len(names)) + offsets[split]
        values = [np.asarray(data.get(n, []), dtype=float) for n in names]
        drawable = [(p, v) for p, v in zip(positions, values) if v.size]
        if drawable:
            ax.boxplot([v for _, v in drawable], positions=[p for p, _ in drawable], widths=0.3,
                       showfliers=False, medianprops={"color": color},
                       boxprops={"color": color}, whiskerprops={"color": color}, capprops={"color": color})
        for i, (p, v) in enumerate(zip(positions, values)):
            # Deterministic horizontal spread of the points (no random jitter).
            spread = np.linspace(-0.06, 0.06, v.size) if v.size > 1 else np.zeros(v.size)
            ax.scatter(p + spread, v, s=14, color=color, alpha=0.8, zorder=3,
                       label=f"{split} F1" if i == 0 else None)
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.legend(frameon=False, fontsize=8)
    return _style(ax, title, "Variant", "Event-based macro F1 (%)")


def plot_per_class_heatmap(
    f1: np.ndarray, variants: Sequence[str], classes: Sequence[str], title: str = "Per-class F1",
    ax: Axes | None = None,
) -> Axes:
    """Heatmap of mean per-class F1, annotated with the values.

    Args:
        f1: mean F1 (%) per variant and class, shape (n_variants, n_classes); NaN where no runs.
        variants: row labels, length n_variants.  classes: column labels, length n_classes.
    """
    f1 = np.asarray(f1, dtype=float)
    ax = _new_ax(ax, max(6.0, 0.8 * len(classes) + 2.5), max(3.0, 0.45 * len(variants) + 2.0))
    image = ax.imshow(np.ma.masked_invalid(f1), cmap="viridis", vmin=0.0, vmax=100.0, aspect="auto")
    for i in range(f1.shape[0]):
        for j in range(f1.shape[1]):
            text = "—" if np.isnan(f1[i, j]) else f"{f1[i, j]:.1f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="black" if (not np.isnan(f1[i, j]) and f1[i, j] > 60) else "white")
    ax.set_xticks(np.arange(len(classes)))
    ax.set_xticklabels(classes, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(np.arange(len(variants)))
    ax.set_yticklabels(variants, fontsize=8)
    ax.figure.colorbar(image, ax=ax, label="Event-based F1 (%)")
    _style(ax, title, "Class", "Variant")
    ax.grid(False)
    return ax


def plot_learning_curves(
    curves: Mapping[str, np.ndarray], generation_epochs: int | None = None,
    title: str = "Validation F1 per epoch", ax: Axes | None = None,
) -> Axes:
    """Mean validation F1 per epoch with a min-max band over seeds, per variant.

    Args:
        curves: variant name -> val F1 (%) of shape (n_seeds, n_epochs), NaN where a run has
            fewer epochs; epoch e (1-based) is column e - 1.
        generation_epochs: epochs per curriculum generation; a dashed line marks each boundary.
    """
    ax = _new_ax(ax, 7.0, 4.0)
    n_epochs = 0
    for name, values in curves.items():
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            continue
        epochs = np.arange(1, values.shape[1] + 1)
        n_epochs = max(n_epochs, values.shape[1])
        counts = np.sum(np.isfinite(values), axis=0)
        ok = counts > 0
        safe = np.where(np.isfinite(values), values, 0.0)
        mean = np.where(ok, safe.sum(axis=0) / np.maximum(counts, 1), np.nan)
        low = np.where(ok, np.where(np.isfinite(values), values, np.inf).min(axis=0), np.nan)
        high = np.where(ok, np.where(np.isfinite(values), values, -np.inf).max(axis=0), np.nan)
        (line,) = ax.plot(epochs, mean, label=name, linewidth=1.5)
        ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    if generation_epochs and n_epochs:
        for boundary in range(generation_epochs, n_epochs, generation_epochs):
            ax.axvline(boundary + 0.5, color="grey", linestyle="--", linewidth=0.8)
    if curves:
        ax.legend(frameon=False, fontsize=8)
    return _style(ax, title, "Epoch (dashed: generation boundary)", "Validation event-based F1 (%)")


def save_figure(fig: Figure, stem: Path) -> tuple[Path, Path]:
    """Write stem.png and stem.pdf with metadata fixed (no dates, no software version) and close."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    fig.tight_layout()
    fig.savefig(png, dpi=120, metadata={"Software": None})
    fig.savefig(pdf, metadata={"CreationDate": None, "Producer": None, "Creator": None})
    plt.close(fig)
    return png, pdf
