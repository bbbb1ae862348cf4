"""Report figures (matplotlib, Agg backend). Plots never compute statistics beyond mean/min/max.

Figures: F1 per variant, the per-class heatmap, learning curves, the forest plot of the comparisons
(difference with its intervals over the ROPE band) and the sequential path of each comparison's
statistic against its group-sequential boundary.

Each function takes data and an optional `ax` and returns the axes; styling is in `_style`.
`save_figure` writes PNG and PDF with fixed metadata so that the same data give the same files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on workers and CI; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

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
    ax: Axes | None = None, metric: str = "F1", ylabel: str = "Event-based macro F1 (%)",
) -> Axes:
    """Points (one per seed) over a box, validation and test side by side, per variant.

    Args:
        val_f1: variant name -> validation F1 of its runs (%), shape (n_runs,); plotted in this order.
        test_f1: variant name -> test F1 (%), shape (n_runs,). Either may be empty (one split only).
        metric: the metric's name in the legend ("validation F1"); ylabel: the axis label.
    """
    names = list(val_f1) or list(test_f1)
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
                       label=f"{split} {metric}" if i == 0 else None)
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.legend(frameon=False, fontsize=8)
    return _style(ax, title, "Variant", ylabel)


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


def plot_psd_roc(
    curves: Mapping[str, np.ndarray], grid: np.ndarray, title: str = "PSD-ROC", ax: Axes | None = None,
) -> Axes:
    """Mean PSD-ROC over seeds with a min-max band, per variant.

    Args:
        curves: variant name -> eTPR of its runs on the common grid, shape (n_runs, G).
        grid: the eFPR (per hour) of the G columns.
    """
    ax = _new_ax(ax, 6.0, 4.0)
    for name, values in curves.items():
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            continue
        (line,) = ax.step(grid, values.mean(axis=0), where="post", label=f"{name} (n = {len(values)})",
                          linewidth=1.4)
        ax.fill_between(grid, values.min(axis=0), values.max(axis=0), step="post", color=line.get_color(),
                        alpha=0.15, linewidth=0)
    ax.set_xlim(float(grid[0]), float(grid[-1]))
    ax.set_ylim(0.0, 1.0)
    if curves:
        ax.legend(frameon=False, fontsize=7)
    return _style(ax, title, "eFPR (false positives per hour)", "eTPR")


ROPE_COLOR = "#bbbbbb"
A_COLOR = "#1f77b4"  # a significantly higher
B_COLOR = "#d62728"  # b significantly higher


def plot_forest(
    labels: Sequence[str], diff: Mapping[str, np.ndarray], low: Mapping[str, np.ndarray],
    high: Mapping[str, np.ndarray], rope: np.ndarray,
    boot: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    title: str = "Difference of means, a - b", ax: Axes | None = None,
) -> Axes:
    """A forest plot: per comparison the difference of means with its interval(s), over its ROPE band.

    Args:
        labels: comparison labels, length m (top to bottom in this order).
        diff, low, high: series name (e.g. "validation F1") -> difference a - b and its 95 % t
            interval (F1 points), shape (m,); NaN where not testable (the row stays, empty). Series
            are drawn side by side within each row.
        rope: ROPE half-width per comparison (F1 points), shape (m,); a grey band [-rope, +rope].
        boot: series name -> (low, high) of the bootstrap interval, shape (m,) each, drawn thinner.
    """
    m, names = len(labels), list(diff)
    ax = _new_ax(ax, 7.5, max(2.5, 0.42 * m * max(1, len(names)) ** 0.5 + 1.2))
    y = np.arange(m)[::-1].astype(float)
    for yi, r in zip(y, np.asarray(rope, dtype=float)):
        if np.isfinite(r) and r > 0:
            ax.fill_betweenx([yi - 0.4, yi + 0.4], -r, r, color=ROPE_COLOR, alpha=0.45, linewidth=0)
    ax.axvline(0.0, color="black", linewidth=0.8)
    offsets = np.linspace(0.15, -0.15, len(names)) if len(names) > 1 else np.zeros(1)
    palette = {"validation F1": VAL_COLOR, "test F1": TEST_COLOR}
    for j, (name, off) in enumerate(zip(names, offsets)):
        color = palette.get(name, f"C{j}")
        d, lo, hi = (np.asarray(v[name], dtype=float) for v in (diff, low, high))
        ax.errorbar(d, y + off, xerr=[d - lo, hi - d], fmt="o", color=color, ecolor=color, capsize=3,
                    markersize=4, linewidth=1.4, label=f"{name}: Δ mean, 95 % t interval")
        if boot and name in boot:
            bl, bh = (np.asarray(v, dtype=float) for v in boot[name])
            ok = np.isfinite(bl) & np.isfinite(bh)
            ax.hlines(y[ok] + off - 0.07, bl[ok], bh[ok], color=color, linewidth=0.8, linestyle=":",
                      label=f"{name}: 95 % bootstrap interval")
    ax.fill_betweenx([], 0, 0, color=ROPE_COLOR, alpha=0.45, label="ROPE (practically equivalent)")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(-0.7, m - 0.3)
    ax.legend(frameon=False, fontsize=7, loc="best")
    _style(ax, title, "Difference of means a − b (F1 points; symmetric log scale beyond ±1)", "")
    ax.set_xscale("symlog", linthresh=1.0)
    low_x, high_x = ax.get_xlim()
    ticks = [x for x in (-50, -20, -10, -5, -2, -1, 0, 1, 2, 5, 10, 20, 50) if low_x <= x <= high_x]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{x:g}" for x in ticks])
    ax.grid(True, axis="x", alpha=0.3)
    ax.grid(False, axis="y")
    return ax


def plot_sequential_paths(
    looks: Sequence[int], paths: Mapping[str, np.ndarray], boundaries: Mapping[str, np.ndarray],
    decided_at: Mapping[str, int | None], title: str = "Sequential seeds: |t| against its boundary",
    fig: Figure | None = None,
) -> Figure:
    """One panel per comparison: |t| at each look evaluated and the boundary at every look (log scale).

    Args:
        looks: seeds per arm at each look, length K.
        paths: comparison label -> t at the looks evaluated so far, shape (k,), k <= K (sign: a - b).
        boundaries: label -> critical |t| at every look, shape (K,) (the boundary in force for it).
        decided_at: label -> 0-based look at which it was decided significant, None if not.
    """
    labels = list(paths)
    cols = min(4, max(1, len(labels)))
    rows = max(1, math.ceil(len(labels) / cols))
    fig = fig or plt.figure(figsize=(3.0 * cols + 0.5, 2.4 * rows + 0.8))
    looks_arr = np.asarray(looks, dtype=float)
    for i, label in enumerate(labels):
        ax = fig.add_subplot(rows, cols, i + 1)
        t = np.asarray(paths[label], dtype=float)
        crit = np.asarray(boundaries[label], dtype=float)
        ax.plot(looks_arr, crit, color="black", linestyle="--", linewidth=1.0, marker="_", markersize=12,
                label="boundary")
        k = t.size
        if k:
            at = decided_at.get(label)
            color = "grey" if at is None else (A_COLOR if t[at] > 0 else B_COLOR)
            ax.plot(looks_arr[:k], np.maximum(np.abs(t), 1e-2), color=color, marker="o", markersize=4,
                    linewidth=1.5, label="|t|")
            if at is not None:
                ax.plot([looks_arr[at]], [max(abs(t[at]), 1e-2)], marker="*", markersize=11, color=color)
        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.set_xticks(looks_arr)
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=7)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        if i % cols == 0:
            ax.set_ylabel("|t|", fontsize=8)
        if i >= len(labels) - cols:
            ax.set_xlabel("seeds per arm", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def save_figure(fig: Figure, stem: Path) -> tuple[Path, Path]:
    """Write stem.png and stem.pdf with metadata fixed (no dates, no software version) and close."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    fig.tight_layout()
    fig.savefig(png, dpi=120, metadata={"Software": None})
    fig.savefig(pdf, metadata={"CreationDate": None, "Producer": None, "Creator": None})
    plt.close(fig)
    return png, pdf
