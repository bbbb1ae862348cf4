"""Report figures (matplotlib, Agg backend). Plots never compute statistics beyond mean/min/max.

Figures: F1 per variant, the per-class heatmap, learning curves, the forest plot of the comparisons
(difference with its intervals over the ROPE band) and the sequential path of each comparison's
statistic against its group-sequential boundary.

Each function takes data and an optional `ax` and returns the axes; styling is in `_style`.
`save_figure` writes PNG and PDF with fixed metadata so that the same data give the same files.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on workers and CI; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FuncFormatter, Locator, LogLocator, MaxNLocator, NullFormatter, NullLocator,
)

VAL_COLOR = "#1f77b4"
TEST_COLOR = "#d62728"
# The smallest text of any figure, in points. The HTML report shows a figure at most 1,100 px wide (9.2 in at
# the PNG's 120 dpi) and scales a wider one down: no figure is wider than 12 in, so this text stays >= 10 px.
SMALL_FONT = 8


def _wrap(text: str, width_in: float, fontsize: float) -> str:
    """Wrap text to lines that fit width_in inches at fontsize points (about 0.55 em a character)."""
    chars = max(20, int(width_in * 72 / (fontsize * 0.55)))
    return textwrap.fill(text, chars) if len(text) > chars else text


def _axes_width_in(ax: Axes) -> float:
    return ax.get_position().width * ax.figure.get_figwidth()


def _legend_outside(ax: Axes, **kwargs) -> None:
    """The legend to the right of the axes, never over the data; tight_layout makes room for it."""
    ax.legend(frameon=False, fontsize=SMALL_FONT, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0, **kwargs)


def _style(ax: Axes, title: str, xlabel: str, ylabel: str) -> Axes:
    # Titles are figure captions too, often longer than the plot is wide: wrapped, never cut at the edge.
    ax.set_title(_wrap(title, _axes_width_in(ax) + 0.6, 11), fontsize=11)
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
    split_names: tuple[str, str] = ("validation", "test"),
) -> Axes:
    """Points (one per seed) over a box, validation and test side by side, per variant.

    Args:
        val_f1: variant name -> validation F1 of its runs (%), shape (n_runs,); plotted in this order.
        test_f1: variant name -> test F1 (%), shape (n_runs,). Either may be empty (one split only).
        metric: the metric's name in the legend ("validation F1"); ylabel: the axis label.
        split_names: the legend's words for the two splits ("": the metric's name alone, for a column of
            results made elsewhere that has no split).
    """
    names = list(val_f1) or list(test_f1)
    ax = _new_ax(ax, min(12.0, max(6.0, 0.85 * len(names) + 3.5)), 4.0)
    offsets = {"validation": -0.18, "test": 0.18}
    for split, name, data, color in (("validation", split_names[0], val_f1, VAL_COLOR),
                                     ("test", split_names[1], test_f1, TEST_COLOR)):
        if not data:  # one split only: no legend entry for the other
            continue
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
                       label=f"{name} {metric}".strip() if i == 0 else None)
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.set_xlim(-0.6, len(names) - 0.4)
    _legend_outside(ax)
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
            # A cell without runs is masked (the axes' white shows): its dash is drawn in grey, not white.
            color = "grey" if np.isnan(f1[i, j]) else ("black" if f1[i, j] > 60 else "white")
            ax.text(j, i, text, ha="center", va="center", fontsize=SMALL_FONT, color=color)
    ax.set_xticks(np.arange(len(classes)))
    ax.set_xticklabels(classes, rotation=35, ha="right", fontsize=SMALL_FONT)
    ax.set_yticks(np.arange(len(variants)))
    ax.set_yticklabels(variants, fontsize=SMALL_FONT)
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
    ax = _new_ax(ax, 9.0, 4.2)
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
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if curves:
        _legend_outside(ax)
    return _style(ax, title, "Epoch (dashed: generation boundary)", "Validation event-based F1 (%)")


@dataclass(frozen=True)
class LevelPoint:
    """One level of a numeric factor in one group of variants: its runs and the interval of their mean."""

    level: float
    runs: np.ndarray  # the metric of every run (%)
    mean: float
    low: float  # interval of the mean (computed by the caller: plots compute no statistics)
    high: float


def plot_factor_levels(
    groups: Mapping[str, Sequence[LevelPoint]], factor_label: str, ylabel: str, title: str,
    ax: Axes | None = None,
) -> Axes:
    """A metric against the levels of a numeric factor: every run as a dot, the mean with its interval, one
    line per group of variants that share the other factors' levels (one group: no legend).

    The x axis is logarithmic when the levels are positive and span more than a factor of 20 (learning rates).
    """
    ax = _new_ax(ax, 7.5, 4.2)
    levels = sorted({p.level for points in groups.values() for p in points})
    for index, (name, points) in enumerate(groups.items()):
        points = sorted(points, key=lambda p: p.level)
        x = np.array([p.level for p in points], dtype=float)
        (line,) = ax.plot(x, [p.mean for p in points], marker="o", linewidth=1.5, label=name or None,
                          zorder=3)
        color = line.get_color()
        ax.errorbar(x, [p.mean for p in points], yerr=[[p.mean - p.low for p in points],
                    [p.high - p.mean for p in points]], fmt="none", ecolor=color, capsize=4, zorder=3)
        for p in points:
            ax.scatter(np.full(p.runs.size, p.level), p.runs, s=12, color=color, alpha=0.45, linewidths=0,
                       zorder=2)
    if levels and levels[0] > 0 and levels[-1] / levels[0] > 20:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(levels)
    ax.set_xticklabels([f"{v:g}" for v in levels])
    if len(groups) > 1:
        _legend_outside(ax)
    return _style(ax, title, factor_label, ylabel)


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
    # Panels side by side (validation, test) share their variants: one legend, right of the last panel.
    spec = ax.get_subplotspec()
    if curves and (spec is None or spec.is_last_col()):
        _legend_outside(ax)
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
    ax = _new_ax(ax, 10.0, max(3.0, 0.42 * m * max(1, len(names)) ** 0.5 + 1.4))
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
    ax.set_yticklabels(labels, fontsize=SMALL_FONT)
    ax.set_ylim(-0.7, m - 0.3)
    handles, names_ = ax.get_legend_handles_labels()  # the t intervals first, then the bootstrap, the ROPE
    order = sorted(range(len(names_)), key=lambda i: (0 if "t interval" in names_[i] else
                                                       1 if "bootstrap" in names_[i] else 2, i))
    ax.legend([handles[i] for i in order], [names_[i] for i in order], frameon=False, fontsize=SMALL_FONT,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    _style(ax, title, "Difference of means a − b (F1 points; symmetric log scale beyond ±1)", "")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.xaxis.set_major_locator(_SpacedLocator((0, -1, 1, -10, 10, -5, 5, -50, 50, -2, 2, -20, 20, -100, 100)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(True, axis="x", alpha=0.3)
    ax.grid(False, axis="y")
    return ax


class _SpacedLocator(Locator):
    """Ticks from a list in order of preference, inside the view, dropping any whose label would come within
    min_gap_pt points of one kept (labels such as -20 and -10 touched on a narrow symlog axis). It runs at
    draw time, so it sees the axes' final width after tight_layout."""

    def __init__(self, candidates: Sequence[float], min_gap_pt: float = 4.0):
        self.candidates, self.min_gap_pt = tuple(candidates), min_gap_pt

    def __call__(self) -> list[float]:
        low_x, high_x = sorted(self.axis.get_view_interval())
        ax = self.axis.axes
        width_pt = ax.get_window_extent().width * 72.0 / ax.figure.dpi
        scale = self.axis.get_transform()
        lo_t, hi_t = (float(scale.transform([x])[0]) for x in (low_x, high_x))

        def at(x: float) -> float:  # position in points from the axis' left end
            return (float(scale.transform([x])[0]) - lo_t) / ((hi_t - lo_t) or 1.0) * width_pt

        size = matplotlib.font_manager.FontProperties(size=matplotlib.rcParams["xtick.labelsize"]).get_size_in_points()

        def gap(a: float, b: float) -> float:  # half of each label's width (about 0.6 em a character), a space
            return (len(f"{a:g}") + len(f"{b:g}")) / 2 * 0.6 * size + self.min_gap_pt

        kept: list[float] = []
        for x in self.candidates:
            if low_x <= x <= high_x and all(abs(at(x) - at(k)) >= gap(x, k) for k in kept):
                kept.append(x)
        return sorted(kept)


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
    cols = min(3, max(1, len(labels)))  # at most 9.5 in wide: shown unscaled in the HTML report
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
        ax.margins(y=0.12)  # the boundary's first mark and a decision's star stay inside the panel
        # Ticks at 1, 2, 5 of each decade, labelled plainly; minor ticks unlabelled (they overlapped).
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(looks_arr)
        ax.set_title(_wrap(label, 3.0, SMALL_FONT), fontsize=SMALL_FONT)
        ax.tick_params(which="both", labelsize=SMALL_FONT)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        if i % cols == 0:
            ax.set_ylabel("|t|", fontsize=SMALL_FONT)
        if i >= len(labels) - cols:
            ax.set_xlabel("seeds per arm", fontsize=SMALL_FONT)
    fig.suptitle(_wrap(title, fig.get_figwidth(), 10), fontsize=10)
    return fig


@dataclass(frozen=True)
class TuningLine:
    """One variant's expected best score against a budget (trials or compute), with its band; shapes (N,)."""

    budget: np.ndarray
    expected_max: np.ndarray
    low: np.ndarray
    high: np.ndarray


def plot_tuning_curves(lines: Mapping[str, TuningLine], xlabel: str, ylabel: str, title: str,
                       ax: Axes | None = None) -> Axes:
    """Expected best validation score after a budget of tuning, one line and shaded band per variant."""
    ax = _new_ax(ax, 7.5, 4.2)
    for name, line in lines.items():
        (drawn,) = ax.plot(line.budget, line.expected_max, marker="o", markersize=3, linewidth=1.5, label=name,
                           zorder=3)
        ax.fill_between(line.budget, line.low, line.high, color=drawn.get_color(), alpha=0.2, linewidth=0,
                        zorder=2)
    if len(lines) > 1:
        _legend_outside(ax)
    return _style(ax, title, xlabel, ylabel)


@dataclass(frozen=True)
class ShareBar:
    """One variance component's share of the variance (in [0, 1]) with its interval."""

    component: str
    share: float
    low: float
    high: float


def plot_variance_shares(groups: Mapping[str, Sequence[ShareBar]], title: str, ax: Axes | None = None) -> Axes:
    """Grouped bars: per group (a variant), one bar per component, its share of the variance with whiskers
    for its interval. A component keeps its colour in every group, so groups compare at a glance."""
    components = list(dict.fromkeys(bar.component for bars in groups.values() for bar in bars))
    ax = _new_ax(ax, min(12.0, 3.0 + 1.2 * len(groups) * max(1, len(components)) / 2), 4.2)
    width = 0.8 / max(1, len(components))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labelled: set[str] = set()  # one legend entry per component
    for g, bars in enumerate(groups.values()):
        for bar in bars:
            j = components.index(bar.component)
            x = g - 0.4 + width * (j + 0.5)
            ax.bar(x, 100 * bar.share, width, color=colors[j % len(colors)], zorder=3,
                   label=None if bar.component in labelled else bar.component)
            labelled.add(bar.component)
            ax.errorbar(x, 100 * bar.share, yerr=[[100 * (bar.share - bar.low)], [100 * (bar.high - bar.share)]],
                        fmt="none", ecolor="black", capsize=3, linewidth=1, zorder=4)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([_wrap(name, 1.6, SMALL_FONT) for name in groups], fontsize=SMALL_FONT)
    ax.set_ylim(0, 100)
    _legend_outside(ax)
    return _style(ax, title, "", "share of the variance between runs (%)")


def save_figure(fig: Figure, stem: Path) -> tuple[Path, Path]:
    """Write stem.png and stem.pdf with metadata fixed (no dates, no software version) and close."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    fig.tight_layout()
    fig.savefig(png, dpi=120, metadata={"Software": None})
    fig.savefig(pdf, metadata={"CreationDate": None, "Producer": None, "Creator": None})
    plt.close(fig)
    return png, pdf
