"""Report sections beyond the paper's Table 4: build.py hooks these in.

- `beyond_blocks`: per metric, the "beyond the t-test" table (P(A > B), bootstrap interval, ASO,
  Bayesian ROPE, seeds for power at every alpha); `forest_blocks`: the forest plot of every
  comparison, validation and test side by side, over each comparison's ROPE band.
- `sequential_blocks`: the group-sequential decisions on validation F1 and the figure of each
  comparison's |t| path against its boundary; the design comes from study["sequential"] (a study
  run with `--until-decided`) or, for a fixed-seed study, is applied in retrospect.
- `summary_blocks`: the configurations as published, the Bayesian and power columns that need only
  means, sds and n, and the forest plot, for `report --summary`.
- `superiorities`, `comparison_sources`, `randomness_note`: P(A > B) with Newcombe's interval and
  Bouthillier et al.'s decision (harness.report.superiority) for the beyond table, and the sources of
  randomness each comparison's runs varied.
- `variance_blocks`: each seed stream's share of a variant's variance (harness.report.variance), for runs
  with stream columns (seed_init, seed_order, seed_augment, seed_teacher).
- `tuning_blocks`: what the [tune] stage bought each variant (harness.report.tuning_curve).

Every random draw comes from `np.random.default_rng(seed)` (REPORT_SEED unless given), split into
independent child generators per table and comparison: the same runs give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from harness.errors import DataError
from harness.report import figures, sequential, stats, tables
from harness.report.superiority import Superiority, superiority
from harness.report.tuning_curve import (DEFAULT_RESAMPLES, TuningCurve, budget_reading, compare_budgets,
                                         tuning_curve)
from harness.report.variance import DEFAULT_DRAWS, RESIDUAL, Design, DesignError, reading, variance_components

REPORT_SEED = 0

HOW_TO_READ_BEYOND = (
    "How to read the tables beyond the t-test. P(A > B) is the probability that a run of a scores higher "
    "than a run of b (ties count half; Bouthillier et al. 2021), with its 95 % interval by Newcombe's "
    "Method 5 (2006), which stays informative when the runs of a and b do not overlap, where a bootstrap "
    "interval collapses to [1, 1] (the bootstrap one is kept in the CSV as pi_low, pi_high). Bouthillier et "
    "al.'s reading: a is significantly better when the whole interval lies above 0.5, and the gain is "
    "meaningful when, besides, P(A > B) is at least γ = 0.75 (\"interval ≥ 0.75\": even its lower end is); "
    "\"B better\" when the interval lies below 0.5. Sources varied says which sources of randomness the "
    "compared runs varied: P(A > B) is over those only. Δ mean [95 % bootstrap CI] is the difference of "
    "means with an interval that does not assume normal scores (compare it with the t interval of Table 4). "
    "ASO ε(A≻B) / ε(B≻A) are Almost Stochastic Order's upper bounds on how far each direction of dominance "
    "is violated (Dror et al. 2019; deepsig's algorithm): ε(A≻B) < 0.5 says a is better more often than "
    "not, < 0.2 (deepsig's recommendation) that a is better; both near 0.5 means no order. P(A better) / P(equiv.) / "
    "P(B better) is the Bayesian comparison of the means (Benavoli et al. 2017; Student posterior, "
    "flat prior, computed with baycomp): the posterior probability that the difference exceeds the "
    "ROPE, lies within ±ROPE F1 points (practically equivalent), or falls below it; decide when one of "
    "the three exceeds 0.95. Seeds/arm for 80 % power is the runs per configuration a two-sided t-test "
    "needs at each α to detect the observed effect 80 % of the time. With paired seeds (`paired = "
    "true`), t, df, p and the intervals are the paired ones, r is the correlation between paired runs "
    "(positive r is what pairing gains), and the rank test is Wilcoxon's signed-rank."
)
SEQUENTIAL_NOTE = (
    "How to read the sequential decisions. At each look (seeds per arm) a comparison whose |t| reaches "
    "its boundary is decided and its arms need no more seeds for it; one still open after the last look "
    "is not significant. Boundaries: {spending} alpha spending over the looks, {family}, critical values "
    "for the t statistic calibrated by simulation ({simulated}). Local α is the level of the boundary in "
    "force when the comparison was decided (α / number still open, with Holm)."
)


def _block(*args: Any, **kwargs: Any) -> Any:
    from harness.report.build import Block

    return Block(*args, **kwargs)


def _write(out_dir: Path, stem: str, numeric: pd.DataFrame, display: pd.DataFrame, caption: str) -> None:
    from harness.report.build import _write_table

    _write_table(out_dir, stem, numeric, display, caption)


def _arr(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def forest_blocks(out_dir: Path, rows_by_metric: dict[str, Sequence[stats.Comparison]], stem: str = "forest",
                  caption: str = "Comparisons: difference of means with 95 % t intervals (dotted: bootstrap); "
                                 "grey: ROPE", flagged: dict[str, tuple[int, int]] | None = None) -> list[Any]:
    """One forest plot of every comparison, the metrics side by side (figures/<stem>.*), after the
    convergence warning when a comparison involves a flagged variant.

    Args:
        rows_by_metric: metric ("val_f1", "test_f1", or a caption) -> its Table 4 rows, same comparisons.
        flagged: variant -> (runs not converged, runs), as unconverged_variants gives it.
    """
    first = next(iter(rows_by_metric.values()))
    if not first:
        return []
    names = {m: tables.METRIC_LABELS.get(m, m) for m in rows_by_metric}
    diff = {names[m]: _arr([r.diff for r in rows]) for m, rows in rows_by_metric.items()}
    low = {names[m]: _arr([r.ci_low for r in rows]) for m, rows in rows_by_metric.items()}
    high = {names[m]: _arr([r.ci_high for r in rows]) for m, rows in rows_by_metric.items()}
    boot = {names[m]: (_arr([r.boot_low for r in rows]), _arr([r.boot_high for r in rows]))
            for m, rows in rows_by_metric.items() if any(r.boot_low is not None for r in rows)}
    ax = figures.plot_forest([r.label for r in first], diff, low, high, _arr([r.rope for r in first]), boot or None,
                             title=caption)
    figures.save_figure(ax.figure, out_dir / "figures" / stem)
    return [*convergence_warning(first, flagged or {}), _block("figure", caption, path=Path(f"figures/{stem}.png"))]


def beyond_blocks(out_dir: Path, rows: Sequence[stats.Comparison], metric: str,
                  superiorities: Sequence[Superiority | None] | None = None,
                  sources: Sequence[str] | None = None) -> list[Any]:
    """The "beyond the t-test" table of one metric (files table4_<metric>_beyond.*).

    Args:
        superiorities: per row, P(A > B) by harness.report.superiority (see `superiorities`): shown with
            Newcombe's interval and Bouthillier et al.'s decision, and written as the superiority_* columns.
        sources: per row, the sources of randomness its runs varied (`comparison_sources`).
    """
    what = tables.METRIC_LABELS.get(metric, metric)
    caption = f"Beyond the t-test on {what}"
    display = tables.display_beyond_table(rows, superiorities, sources)
    numeric = tables.comparison_table(rows)
    if superiorities is not None:
        extra = tables.superiority_columns(superiorities, sources if sources is not None else [""] * len(rows))
        numeric = pd.concat([numeric, extra], axis=1)
    _write(out_dir, f"table4_{metric}_beyond", numeric, display, caption)
    return [_block("table", caption, table=display)]


def retrospective_looks(n_max: int) -> tuple[int, ...]:
    """Looks for applying the sequential design to a fixed-seed study with n_max seeds per arm:
    3, 5, 10, 20, 40 below n_max, then n_max (2 and 3 for a 3-seed study)."""
    looks = [n for n in (3, 5, 10, 20, 40) if n < n_max] + [n_max]
    if len(looks) == 1 and n_max >= 3:
        looks = [2, n_max]
    return tuple(looks)


def sequential_blocks(out_dir: Path, results: pd.DataFrame, study: dict[str, Any],
                      seed: int = REPORT_SEED, metric: str = "val_f1",
                      flagged: dict[str, tuple[int, int]] | None = None) -> list[Any]:
    """Sequential decisions and paths on `metric` (see the module docstring); [] when not applicable."""
    comparisons = study.get("comparisons", [])
    paired = bool(study.get("paired", False))
    if not comparisons or not len(results):
        return []
    scores = [tables.comparison_scores(results, c["a"], c["b"], metric, paired) for c in comparisons]
    n_max = max(min(a.size, b.size) for a, b in scores)
    config = dict(study.get("sequential") or {})
    if config:
        looks = tuple(int(n) for n in config["looks"])
        heading = "Sequential seeds (--until-decided)"
    elif n_max >= (4 if paired else 3):
        looks = retrospective_looks(n_max)
        heading = f"Sequential seeds in retrospect (looks at {', '.join(map(str, looks))} seeds per arm)"
    else:
        return []
    design = sequential.design_sequential(
        looks, len(comparisons), rng=np.random.default_rng(int(config.get("seed", seed))),
        alpha=float(config.get("alpha", 0.05)), family=str(config.get("family", "holm")),
        spending=str(config.get("spending", sequential.DEFAULT_SPENDING)),
        rho=float(config.get("rho", sequential.DEFAULT_RHO)), paired=paired)
    labels = [c.get("label", f"{c['a']} vs {c['b']}") for c in comparisons]
    decisions = sequential.sequential_decisions(design, scores, labels)
    display = tables.sequential_table(decisions, design)
    caption = (f"{heading}: decisions on {tables.METRIC_LABELS.get(metric, metric)}"
               + ("" if config else "; what --until-decided would have run"))
    _write(out_dir, "sequential", display, display, caption)
    paths = {d.label: np.array(d.t) for d in decisions}
    bounds = {d.label: np.array(d.critical_t) for d in decisions}
    decided = {d.label: (d.look - 1 if d.status == "significant" and d.look else None) for d in decisions}
    fig_caption = "Sequential path of each comparison's |t| (points) against its boundary (dashed); star: decided"
    fig = figures.plot_sequential_paths(design.looks, paths, bounds, decided, title=fig_caption)
    figures.save_figure(fig, out_dir / "figures" / "sequential_paths")
    spending = {"kim-demets": f"Kim-DeMets (α τ^{design.rho:g})", "obrien-fleming": "Lan-DeMets O'Brien-Fleming-type",
                "pocock": "Lan-DeMets Pocock-type"}[design.spending]
    m, top = design.n_comparisons, design.boundary(design.n_comparisons)
    if design.family == "holm":
        family = (f"group-sequential Holm over the {m} comparisons (family-wise error {design.alpha:g} over all "
                  "comparisons and looks)")
        simulated = (f"with all {m} comparisons open and no effect, the simulated chance that any crosses is at "
                     f"most {m * top.simulated_alpha:.4f} ± {m * top.simulated_alpha_se:.4f}")
    else:
        family = f"each comparison at α = {design.alpha:g} over its looks"
        simulated = f"simulated type I error of a comparison: {top.simulated_alpha:.4f} ± {top.simulated_alpha_se:.4f}"
    note = SEQUENTIAL_NOTE.format(spending=spending, family=family, simulated=simulated)
    warning = pairs_warning([(label, c["a"], c["b"]) for label, c in zip(labels, comparisons)], flagged or {})
    return [_block("h2", heading), *warning, _block("table", caption, table=display), _block("p", note),
            _block("figure", fig_caption, path=Path("figures/sequential_paths.png"))]


def summary_blocks(out_dir: Path, table: Any, rows: Sequence[Any], seed: int = REPORT_SEED) -> list[Any]:
    """For `report --summary`: configurations as published, the Bayesian and power columns from means,
    sds and n alone, the forest plot, and what the sequential design would spend on these effects."""
    configs = tables.published_configuration_table(list(table.configurations.values()))
    caption_c = f"Configurations as published ({table.metric or 'metric as given'})"
    _write(out_dir, "configurations_published", configs, configs, caption_c)
    comparisons = [r.comparison for r in rows]
    caption_b = "Beyond the t-test from summary statistics: Bayesian ROPE comparison and seeds for 80 % power"
    beyond = tables.display_beyond_table(comparisons)
    numeric = tables.comparison_table(comparisons)[["comparison", "a", "b", "rope", "p_a_better", "p_equivalent",
                                                    "p_b_better", *[f"seeds_for_80_power_{a:g}"
                                                                    for a in comparisons[0].alphas]]]
    _write(out_dir, "table4_summary_beyond", numeric, beyond, caption_b)
    forest = forest_blocks(out_dir, {table.metric or "published": comparisons}, "forest_summary",
                           "Comparisons: difference of published means with 95 % t intervals; grey: ROPE")
    return [_block("table", caption_c, table=configs), _block("table", caption_b, table=beyond), *forest,
            *_simulated_sequential_blocks(out_dir, table, seed)]


def _simulated_sequential_blocks(out_dir: Path, table: Any, seed: int, n_studies: int = 4000) -> list[Any]:
    """What --until-decided would spend on these effects: the published means and sds taken as true,
    normal scores, the default design (looks from the published n), simulated."""
    n_max = min(c.n for c in table.configurations.values())
    if n_max < 3:
        return []
    looks = retrospective_looks(n_max)
    pairs = [(c.a, c.b) for c in table.comparisons]
    truth = {name: (c.mean.value, c.sd.value) for name, c in table.configurations.items()}
    diff, sd_a, sd_b = sequential.paper_effects(truth, pairs)
    if np.any((sd_a == 0) & (sd_b == 0)):
        return []
    rng_design, rng_sim = np.random.default_rng(seed).spawn(2)
    design = sequential.design_sequential(looks, len(pairs), rng=rng_design)
    sim = sequential.simulate_design(design, diff, sd_a, sd_b, n_studies, rng_sim)
    rows = []
    for i, spec in enumerate(table.comparisons):
        rec: dict[str, str] = {"Comparison": spec.label}
        for k, n in enumerate(looks):
            rec[f"P(decided at {n})"] = f"{(sim.decided_at[:, i] == k).mean():.2f}"
        rec[f"P(significant by {looks[-1]})"] = f"{(sim.decided_at[:, i] >= 0).mean():.2f}"
        rec["Expected seeds/arm"] = f"{sim.seeds_per_arm[:, i].mean():.1f}"
        rows.append(rec)
    display = pd.DataFrame(rows)
    caption = (f"Sequential seeds on the published effects (simulated): --until-decided --looks "
               f"{','.join(map(str, looks))}, {n_studies} simulated studies with the published means and sds "
               f"as the truth; the family uses {sim.seeds_per_arm.mean():.1f} of {looks[-1]} seeds per arm on average")
    _write(out_dir, "sequential_simulated", display, display, caption)
    return [_block("table", caption, table=display)]


# ---------------------------------------------------------------- uncertainty within a run, compute

UNCERTAINTY_NOTE = (
    "How to read the clip-level bootstrap. Every run is scored on one fixed set of evaluation clips. "
    "Resampling those clips with replacement ({event} replicates for the event-based F1, {psds} for the "
    "threshold-free metrics; harness.evaluation.bootstrap) gives each run's percentile 95 % interval: how far "
    "its score could move on another evaluation set of the same size. The columns are the means over a "
    "variant's runs of each run's bootstrap standard error and of its interval's half-width, beside the "
    "standard deviation over seeds, which measures training randomness on these same clips. The two "
    "add up in a claim about new data: a difference between variants that the t-test over seeds finds "
    "significant but that is smaller than the clip interval may not hold on another test set (both "
    "variants are scored on the same clips, so their difference varies less than either score). "
    "Random draws: one generator per run, seeded by the report seed and the job id."
)


def uncertainty_blocks(out_dir: Path, results: pd.DataFrame, variants: Sequence[str], metrics: Sequence[str],
                       records: dict[str, Any], missing: Sequence[str], event_resamples: int,
                       psds_resamples: int) -> list[Any]:
    """The clip-level bootstrap beside the across-seed sd (table uncertainty.*), or why it is missing.

    Args:
        records: job id -> harness.records.UncertaintyRecord.
        missing: why the jobs left out have none (a reason each).
    """
    heading = _block("h2", "Uncertainty within a run: clip-level bootstrap")
    intervals = {job: {m: (iv.std, (iv.high - iv.low) / 2) for m, iv in r.intervals.items()
                       if iv.std is not None and iv.low is not None and iv.high is not None}
                 for job, r in records.items()}
    if not any(intervals.values()):
        why = missing[0] if missing else "no metric of this report has a clip-level bootstrap (segment F1)"
        return [heading, _block("p", f"Not computed: {why}" + (f" ({len(missing)} runs)" if len(missing) > 1 else ""))]
    numeric, display = tables.uncertainty_table(results, intervals, variants, metrics)
    caption = "Spread over seeds and within each run (clip-level bootstrap), in points"
    if missing:
        caption += f"; {len(missing)} run(s) without a bootstrap: {missing[0]}"
    _write(out_dir, "uncertainty", numeric, display, caption)
    note = UNCERTAINTY_NOTE.format(event=event_resamples, psds=psds_resamples)
    return [heading, _block("table", caption, table=display), _block("p", note)]


COMPUTE_NOTE = (
    "Params and MACs are the student's, counted from its config (harness.model.size: the LSTM's and the two "
    "heads' matrix products and the attention pooling, per 10-s clip). Energy is codecarbon's (offline "
    "tracker, this process only), for training and for the final evaluation of each run, summed over runs; "
    "a resumed run counts its last attempt only. How codecarbon estimated power: {estimates}."
)


def compute_blocks(out_dir: Path, results: pd.DataFrame, variants: Sequence[str]) -> list[Any]:
    """Size and energy per variant (table compute.*); "not measured" where results have none."""
    heading = _block("h2", "Size and energy")
    numeric, display = tables.compute_table(results, variants)
    known = [c for c in ("params", "train_kwh", "eval_kwh") if c in numeric and numeric[c].notna().any()]
    if not known:
        return [heading, _block("p", "Size and energy: not measured (results written before the harness "
                                     "recorded them, or codecarbon not installed: `pip install codecarbon`).")]
    caption = "Student size and energy per variant (kWh summed over its runs)"
    _write(out_dir, "compute", numeric, display, caption)
    parts = sorted({part for e in numeric["energy_estimate"].dropna().astype(str) for part in e.split("; ") if part})
    note = COMPUTE_NOTE.format(estimates="; ".join(parts) or "not measured (codecarbon is not installed)")
    return [heading, _block("table", caption, table=display), _block("p", note)]


def roc_blocks(out_dir: Path, results: pd.DataFrame, variants: Sequence[str], records: dict[str, Any]) -> list[Any]:
    """PSD-ROC per variant, mean over seeds on the common eFPR grid, one panel per split (figures/psd_roc.*)."""
    import matplotlib.pyplot as plt

    with_roc = [r for r in records.values() if r.roc]
    if not with_roc:
        return []
    scenario, grid = with_roc[0].roc_scenario, np.asarray(with_roc[0].roc_grid)
    splits = [s for s in ("validation", "test") if any(s in r.roc for r in with_roc)]
    fig = plt.figure(figsize=(6.0 * len(splits), 4.2))
    for i, split in enumerate(splits):
        curves = {}
        for name in variants:
            jobs = results.loc[results["variant"] == name, "job_id"].astype(str)
            rows = [records[j].roc[split] for j in jobs if j in records and split in records[j].roc]
            if rows:
                curves[name] = np.asarray(rows, dtype=float)
        figures.plot_psd_roc(curves, grid, title=f"{split}", ax=fig.add_subplot(1, len(splits), i + 1))
    step = float(grid[1] - grid[0]) if len(grid) > 1 else 0.0
    caption = (f"PSD-ROC ({scenario.upper()} scenario) per variant: mean eTPR over seeds on a common eFPR grid "
               f"(0-{grid[-1]:g} per hour, step {step:g}); band: min-max over seeds. A run's area under its curve "
               f"over {grid[-1]:g} is its {scenario.upper()}, so the mean curve's area is the mean {scenario.upper()}")
    fig.suptitle(f"PSD-ROC ({scenario.upper()} scenario), mean over seeds", fontsize=10)
    figures.save_figure(fig, out_dir / "figures" / "psd_roc")
    return [_block("figure", caption, path=Path("figures/psd_roc.png"))]


# ---------------------------------------------------------------- convergence

CONVERGENCE_NOTE = (
    "How to read the convergence table. {rule} Converged counts the runs that passed, of those with a "
    "per-epoch log; the gain and the slope are the medians over the tested runs (validation F1, whatever "
    "metric the tables show: it is the metric that chooses each run's best epoch). A variant with a run "
    "that had not converged is marked † in Tables 1-3, and every comparison involving it carries a warning: "
    "its runs were still improving when the step budget ended, so a difference may reflect the budget as "
    "much as the method. Per run: tables/convergence_runs.csv."
)
UNCONVERGED_MARK = " †"


def unconverged_variants(results: pd.DataFrame, verdicts: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """variant -> (runs not converged, runs with a curve), for the variants with at least one such run.

    Args:
        verdicts: job id -> harness.report.convergence.Convergence.
    """
    out: dict[str, tuple[int, int]] = {}
    if not len(results) or "job_id" not in results:
        return out
    for variant, runs in results.groupby("variant", sort=False):
        got = [verdicts[j] for j in runs["job_id"].astype(str) if j in verdicts]
        late = sum(v.status == "not converged" for v in got)
        if late:
            out[str(variant)] = (late, len(got))
    return out


def convergence_blocks(out_dir: Path, results: pd.DataFrame, variants: Sequence[str],
                       verdicts: dict[str, Any]) -> list[Any]:
    """The convergence section (tables convergence.* and convergence_runs.csv), or why it is missing."""
    from harness.report.convergence import TREND_ALPHA, rule_text

    heading = _block("h2", "Convergence: had validation F1 stopped improving?")
    if not verdicts:
        return [heading, _block("p", "Not checked: no run has a readable per-epoch log (jobs/<id>/metrics.csv).")]
    numeric, display = tables.convergence_table(results, verdicts, variants)
    caption = "Runs whose validation F1 had converged when training ended, per variant"
    _write(out_dir, "convergence", numeric, display, caption)
    (out_dir / "tables" / "convergence_runs.csv").write_text(
        tables.to_csv(tables.convergence_runs_table(results, verdicts)), encoding="utf-8", newline="\n")
    flagged = unconverged_variants(results, verdicts)
    blocks = [heading]
    if flagged:
        blocks.append(_block("p", "Warning: " + _flag_list(flagged) + " had not converged (by a rule that flags at "
                             f"most {100 * TREND_ALPHA:g} % of true plateaus; its power: below the table)."))
    tails = [v.tail_epochs for v in verdicts.values() if v.status != "undetermined"]  # the rule's rates there
    return [*blocks, _block("table", caption, table=display),
            _block("p", CONVERGENCE_NOTE.format(rule=rule_text(tails)))]


def _flag_list(flagged: dict[str, tuple[int, int]]) -> str:
    return ", ".join(f"{v} ({late} of {n} runs)" for v, (late, n) in flagged.items())


def mark_unconverged(display: pd.DataFrame, flagged: dict[str, tuple[int, int]]) -> tuple[pd.DataFrame, list[Any]]:
    """A Tables 1-3 display with † after each flagged variant's name, and the legend paragraph ([] if none)."""
    if "Experiment" not in display or not any(display["Experiment"].isin(list(flagged))):
        return display, []
    out = display.copy()
    shown = [name for name in out["Experiment"] if name in flagged]
    out["Experiment"] = [f"{name}{UNCONVERGED_MARK}" if name in flagged else name for name in out["Experiment"]]
    legend = ("† not converged when training ended (see Convergence): "
              + _flag_list({v: flagged[v] for v in shown}) + ".")
    return out, [_block("p", legend)]


def convergence_warning(rows: Sequence[stats.Comparison], flagged: dict[str, tuple[int, int]]) -> list[Any]:
    """The warning line above a Table 4 (or beyond-the-t-test) table whose rows involve a flagged variant."""
    return pairs_warning([(r.label, r.a, r.b) for r in rows], flagged)


def pairs_warning(pairs: Sequence[tuple[str, str, str]], flagged: dict[str, tuple[int, int]]) -> list[Any]:
    """The same warning for any comparisons given as (label, a, b): Table 4, the forest plot, sequential seeds."""
    hit = [(label, a, b) for label, a, b in pairs if a in flagged or b in flagged]
    if not hit:
        return []
    variants = {v: flagged[v] for _, a, b in hit for v in (a, b) if v in flagged}
    labels = "; ".join(f"'{label}'" for label, _, _ in hit)
    verb = "involves" if len(hit) == 1 else "involve"
    return [_block("p", f"Warning, not converged: {labels} {verb} {_flag_list(variants)}, whose validation F1 "
                        "was still improving when training ended; a difference may reflect the step budget as "
                        "much as the method (see Convergence).")]


# ---------------------------------------------------------------- sources of randomness, P(A > B)

# results.csv columns of the seed streams (issue 24) -> stream name, outer to inner: the order of a nested
# design (a teacher holds several inits, an init several batch orders).
STREAM_COLUMNS: dict[str, str] = {"seed_teacher": "teacher", "seed_init": "init", "seed_order": "order",
                                  "seed_augment": "augment"}
# Tags of the sections' generators (section_generator): distinct from Table 4's children of the report seed.
VARIANCE_TAG = 1
TUNING_TAG = 2


def section_generator(seed: int, tag: int, *keys: int) -> np.random.Generator:
    """The generator of one item (variant, metric) of a section: seeded by the report seed, the section's tag and
    the item's keys, so adding a section or a variant never shifts the numbers of another."""
    return np.random.default_rng([seed, tag, *keys])


@dataclass(frozen=True)
class StreamGroup:
    """Seed streams that split a set of runs the same way: they varied together and count as one factor.

    Attributes:
        name: the stream ("init"), or the streams joined by "+" ("init+order+augment") when they moved together.
        column: a results column holding the group's level ids.
        levels: distinct levels among the runs.
    """

    name: str
    column: str
    levels: int


def stream_groups(runs: pd.DataFrame) -> list[StreamGroup]:
    """The seed streams that varied across `runs` (>= 2 levels), streams whose levels split the runs identically
    merged (a study whose streams all follow the run's seed has one group), outer stream first."""
    names: dict[tuple[int, ...], list[str]] = {}
    columns: dict[tuple[int, ...], str] = {}
    for column, name in STREAM_COLUMNS.items():
        if column in runs and runs[column].nunique() >= 2:
            key = tuple(pd.factorize(runs[column])[0])  # codes in order of first appearance: equal iff same split
            names.setdefault(key, []).append(name)
            columns.setdefault(key, column)
    return [StreamGroup("+".join(n), columns[key], len(set(key))) for key, n in names.items()]


def _words(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def sources_varied(runs: pd.DataFrame) -> str:
    """Which sources of randomness `runs` varied, briefly, with their levels: "init (3), order (3); augment fixed;
    1 teacher", or "seed (5): all streams; 1 teacher" where the run's seed drives every stream."""
    if not any(c in runs for c in STREAM_COLUMNS):  # today's default: one seed per run, one teacher per study
        seeds = int(runs["seed"].nunique()) if "seed" in runs else len(runs)
        if not _harness_runs(runs):
            return f"seed ({seeds}); streams not recorded"
        return f"seed ({seeds}): all streams; 1 teacher"
    groups = stream_groups(runs)
    varied = ", ".join(f"{' + '.join(g.name.split('+'))} ({g.levels}{', together' if '+' in g.name else ''})"
                       for g in groups)
    parts = [varied] if varied else []
    fixed = [name for column, name in STREAM_COLUMNS.items()
             if column in runs and runs[column].nunique() < 2 and name != "teacher"]
    if fixed:
        parts.append(f"{_words(fixed)} fixed")
    if not any("teacher" in g.name.split("+") for g in groups):
        parts.append("1 teacher")
    return "; ".join(parts)


def _harness_runs(runs: pd.DataFrame) -> bool:
    """Runs of the harness (results.csv has their bundle_key) rather than results made elsewhere (`report
    --results`), whose sources of randomness the harness does not know."""
    return "bundle_key" in runs


def superiorities(results: pd.DataFrame, study: dict[str, Any], metric: str) -> list[Superiority | None]:
    """P(A > B) with Newcombe's interval for each of the study's comparisons, on the runs Table 4 compares (the
    seeds both arms finished when paired); None where a side has no run."""
    paired = bool(study.get("paired", False))
    out: list[Superiority | None] = []
    for c in study.get("comparisons", []):
        a, b = tables.comparison_scores(results, c["a"], c["b"], metric, paired)
        out.append(superiority(a, b) if a.size and b.size else None)
    return out


def comparison_sources(results: pd.DataFrame, study: dict[str, Any]) -> list[str]:
    """For each comparison of the study, the sources of randomness its runs (of a and of b) varied."""
    if "variant" not in results:
        return ["" for _ in study.get("comparisons", [])]
    return [sources_varied(results[results["variant"].isin([c["a"], c["b"]])]) for c in study.get("comparisons", [])]


def randomness_note(results: pd.DataFrame, variants: Sequence[str]) -> str:
    """The how-to-read paragraph on the sources of randomness the compared runs varied."""
    runs = results[results["variant"].isin(list(variants))] if "variant" in results else results
    if any(c in runs for c in STREAM_COLUMNS):
        what = f"these sources (levels over the compared runs): {sources_varied(runs)}"
    elif not _harness_runs(runs):
        what = ("a seed each, as the file records them; which sources of randomness (initialisation, data order, "
                "augmentation, a teacher or pretrained model) each seed drove is not known to the harness")
    else:
        what = ("the run's seed alone, which drives every stream at once (the student's initial weights, the batch "
                "order and the curriculum's ties, SpecAugment's masks and label noise); the teacher was trained once "
                "for the study, so its variance is in no comparison")
    return ("Sources of randomness. The runs varied " + what + ". P(A > B), the t-test and every interval of these "
            "tables measure the spread these sources cause, and only it: a source held fixed adds variance that a "
            "rerun of the whole pipeline would show and these intervals do not. Bouthillier et al. (2021) measured "
            "that the sources contribute very differently and that varying only some of them understates the "
            "variance; they recommend randomising every source and deciding with P(A > B).")


# ---------------------------------------------------------------- variance components of seed streams

VARIANCE_NOTE = (
    "How to read the variance components. Each seed stream that varied over a variant's runs is a random factor; "
    "its component is how much the metric varies (in points²) when only that stream's seed changes, and its "
    "share is the component over the sum of all components. Estimator: ANOVA expected mean squares of the "
    "{design} design (harness.report.variance; exact and closed-form for a balanced design, which is what the "
    "harness runs: REML, e.g. statsmodels' MixedLM, gives the same estimates there unless one is negative); a "
    "negative estimate is reported as 0. Intervals: 95 % generalized confidence intervals (Weerahandi 1993) "
    "from {draws:,} pivot draws, which stay defined when an estimate is 0 and give the shares' intervals from "
    "the same draws. The residual holds "
    "what the design does not separate: interactions between streams, repeated cells, and any stream that "
    "changes with every run. Trust a share's interval, not its point: with 2-3 levels a stream has 1-2 degrees "
    "of freedom and its interval spans most of [0, 100] %."
)


def stream_design(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """A variant's runs as a design of seed streams: (a column per factor, named by its stream group; the
    factors; the groups that change with every run, which the design cannot tell from the residual)."""
    groups = stream_groups(runs)
    factors = [g for g in groups if g.levels < len(runs)]
    frame = pd.DataFrame({g.name: runs[g.column].to_numpy() for g in factors}, index=runs.index)
    return frame, [g.name for g in factors], [g.name for g in groups if g.levels == len(runs)]


def _stream_labels(factors: Sequence[str], absorbed: Sequence[str]) -> dict[str, str]:
    """How the plain reading names merged streams, and the residual when it holds whole streams."""
    labels = {f: f"the {_words(f.split('+'))} streams together" for f in factors if "+" in f}
    if absorbed:
        streams = [s for name in absorbed for s in name.split("+")]
        several = len(streams) > 1
        labels[RESIDUAL] = (f"what the design does not separate (the {_words(streams)} stream{'s' if several else ''}, "
                            f"which change{'' if several else 's'} with every run, interactions and run-to-run noise)")
    return labels


def _streams_design(study: dict[str, Any]) -> Design:
    """study.json's `streams_design`: "crossed" (the default) or "nested" (streams outer to inner as in
    STREAM_COLUMNS)."""
    design = study.get("streams_design") or "crossed"
    if design not in ("crossed", "nested"):
        raise DataError(f"study.json: streams_design is {design!r}; it must be 'crossed' or 'nested'")
    return design


def variance_blocks(out_dir: Path, results: pd.DataFrame, study: dict[str, Any], variants: Sequence[str],
                    metrics: Sequence[str], seed: int = REPORT_SEED) -> list[Any]:
    """Variance components of the seed streams per variant (table and figure variance_components.*), with the
    plain reading; [] when no variant's runs carry a stream column with 2 or more levels besides the run."""
    if not len(results) or not any(c in results for c in STREAM_COLUMNS):
        return []
    design = _streams_design(study)
    analysed, refused, readings = [], [], []
    for i, variant in enumerate(variants):
        runs = results[results["variant"] == variant]
        frame, factors, absorbed = stream_design(runs)
        if not factors:
            continue
        labels = _stream_labels(factors, absorbed)
        for j, metric in enumerate(metrics):
            what = tables.SHORT_LABELS.get(metric, metric)
            try:
                vc = variance_components(frame.assign(**{metric: runs[metric]}), factors, metric,
                                         section_generator(seed, VARIANCE_TAG, i, j), design=design)
            except DesignError as e:
                refused.append(_block("p", f"{variant} ({what}): not estimated: {e}."))
                continue
            analysed.append((variant, metric, vc))
            readings.append(_block("p", f"{variant} ({what}): {reading(vc, labels)}"))
    if not analysed and not refused:
        return []
    blocks = [_block("h2", "Where the variance comes from: seed streams")]
    if analysed:
        numeric, display = tables.variance_table(analysed)
        caption = f"Variance components of the seed streams per variant ({design} design; 95 % intervals)"
        _write(out_dir, "variance_components", numeric, display, caption)
        several = len(metrics) > 1
        groups = {f"{v} ({tables.SHORT_LABELS.get(m, m)})" if several else v:
                  [figures.ShareBar(c.name, c.share, c.share_low, c.share_high) for c in vc.components]
                  for v, m, vc in analysed}
        fig_caption = "Share of the variance between runs per seed stream, with 95 % generalized intervals"
        ax = figures.plot_variance_shares(groups, fig_caption)
        figures.save_figure(ax.figure, out_dir / "figures" / "variance_components")
        blocks += [_block("table", caption, table=display), *readings,
                   _block("figure", fig_caption, path=Path("figures/variance_components.png"))]
    return [*blocks, *refused, _block("p", VARIANCE_NOTE.format(design=design, draws=DEFAULT_DRAWS))]


# ---------------------------------------------------------------- what tuning buys

TUNING_NOTE = (
    "How to read what tuning buys. A trial is one point (lambda1, lambda2) of the [tune] grid, scored by its mean "
    "validation F1 over its tuning seeds, the score the harness chose the point by. The curve is the expected "
    "best of k trials drawn at random without replacement from the grid: the mean of the best score over every "
    "k-subset of the grid's points (Tang et al. 2020's unbiased estimator of Dodge et al. 2019's expected "
    "validation performance, not Dodge et al.'s with-replacement formula, which is biased low as k nears N). "
    "k = 1 is the grid's mean, k = N its best point, the one chosen. Compute is k x the mean cost of a trial "
    "(the summed wall time of its tuning jobs). Band: 95 % pointwise percentile bootstrap over the grid's points "
    "({resamples:,} resamples): it shows how much the curve owes to which points happened to score well, and it "
    "is too narrow as k nears N (no resample goes beyond the best score found), so read an order at large budgets "
    "as indicative. A curve flat beyond a small k says the variant's result owes little to tuning; curves that "
    "cross say the comparison's winner depends on the tuning budget. The best of all trials is a maximum over "
    "the grid on the same validation data: it is optimistic, and the replicate runs' validation F1 (Table 4) is "
    "the unbiased score of the chosen point."
)


def tuning_points(records: Sequence[Any]) -> pd.DataFrame:
    """One row per (variant, lambda1, lambda2) of the tuning grid: `val_f1`, the mean over its tuning jobs with a
    score (as harness.study.runner.choose_lambdas scores it), `jobs` and their summed `seconds`.

    Args:
        records: harness.records.Result of phase "tune".
    """
    frame = pd.DataFrame([{"variant": r.variant, "lambda1": r.lambda1, "lambda2": r.lambda2,
                           "val_f1": np.nan if r.val_f1 is None else float(r.val_f1),
                           "wall_seconds": float(r.wall_seconds)} for r in records],
                         columns=["variant", "lambda1", "lambda2", "val_f1", "wall_seconds"])
    points = frame.groupby(["variant", "lambda1", "lambda2"], sort=True).agg(
        val_f1=("val_f1", "mean"), jobs=("val_f1", "size"), seconds=("wall_seconds", "sum")).reset_index()
    return points[np.isfinite(points["val_f1"].to_numpy(dtype=float))]


def compute_unit(seconds: float) -> tuple[str, float]:
    """The unit a compute axis reads best in, by its largest value: ("s", 1), ("min", 60) or ("h", 3600)."""
    if seconds < 300:
        return "s", 1.0
    return ("min", 60.0) if seconds < 300 * 60 else ("h", 3600.0)


def tuning_curves(points: pd.DataFrame, order: Sequence[str], seed: int = REPORT_SEED
                  ) -> tuple[dict[str, TuningCurve], str]:
    """variant -> its tuning curve (without-replacement estimator, bootstrap band, compute in the unit returned),
    in `order` (study order; variants not in it after, by name). Variant i of that list draws from
    section_generator(seed, TUNING_TAG, i)."""
    tuned = set(points["variant"])
    names = [v for v in order if v in tuned] + sorted(tuned - set(order))
    longest = max((points[points["variant"] == v]["seconds"].sum() for v in names), default=0.0)
    unit, scale = compute_unit(float(longest))
    curves = {}
    for i, v in enumerate(names):
        grid = points[points["variant"] == v]
        curves[v] = tuning_curve(grid["val_f1"].to_numpy(dtype=float), section_generator(seed, TUNING_TAG, i),
                                 costs=grid["seconds"].to_numpy(dtype=float) / scale)
    return curves, unit


def tuning_blocks(out_dir: Path, records: Sequence[Any], study: dict[str, Any], order: Sequence[str],
                  seed: int = REPORT_SEED) -> list[Any]:
    """What tuning buys (tables tuning_curve.*, tuning_budget.*, figure tuning_curves.*); [] without tuning
    results (a study without [tune])."""
    points = tuning_points(records)
    if points.empty:
        return []
    curves, unit = tuning_curves(points, order, seed)
    by_variant = {v: points[points["variant"] == v] for v in curves}
    numeric, display = tables.tuning_table(curves, {v: float(p["seconds"].mean()) for v, p in by_variant.items()},
                                           {v: float(p["jobs"].mean()) for v, p in by_variant.items()})
    caption = "Expected best validation F1 (%) after k tuning trials [95 % bootstrap band]"
    _write(out_dir, "tuning_curve", numeric, display, caption)
    blocks = [_block("h2", "What tuning buys: expected best validation F1 against the tuning budget"),
              _block("table", caption, table=display), *_budget_blocks(out_dir, curves, study, unit),
              _block("figure", _tuning_figure(out_dir, curves, unit), path=Path("figures/tuning_curves.png")),
              _block("p", TUNING_NOTE.format(resamples=DEFAULT_RESAMPLES))]
    return blocks


def _budget_blocks(out_dir: Path, curves: dict[str, TuningCurve], study: dict[str, Any], unit: str) -> list[Any]:
    """Per comparison of two tuned variants, on trials and on compute: does the order change with the budget?"""
    entries = []
    for c in study.get("comparisons", []):
        a, b = c["a"], c["b"]
        if a not in curves or b not in curves:
            continue
        label = c.get("label", f"{a} vs {b}")
        for axis in ("trials", "compute"):
            bc = compare_budgets(curves[a], curves[b], axis)
            if not bc.budget.size:  # on compute: one variant's whole grid costs less than a trial of the other
                continue
            text = budget_reading(bc, a, b)
            if axis == "compute":  # budget_reading names the budget "compute": give it its unit
                text = text.replace(" compute", f" job-{unit}")
            entries.append((label, a, b, bc, text))
    if not entries:
        return []
    numeric, display = tables.budget_table(entries, unit)
    caption = "Does the order of two variants change with the tuning budget? (a vs b, expected best of each)"
    _write(out_dir, "tuning_budget", numeric, display, caption)
    return [_block("table", caption, table=display)]


def _tuning_figure(out_dir: Path, curves: dict[str, TuningCurve], unit: str) -> str:
    """Two panels, against trials and against compute; returns the caption."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12.0, 4.2))
    for i, (axis, xlabel) in enumerate((("trials", "tuning trials (grid points)"),
                                        ("compute", f"compute (job-{unit})"))):
        lines = {v: figures.TuningLine(c.k if axis == "trials" else c.compute, c.expected_max, c.low, c.high)
                 for v, c in curves.items()}
        figures.plot_tuning_curves(lines, xlabel, "expected best validation F1 (%)", f"against {axis}",
                                   ax=fig.add_subplot(1, 2, i + 1))
    caption = ("Expected best validation F1 after k tuning trials, against trials and against compute "
               "(band: 95 % pointwise bootstrap)")
    fig.suptitle(caption, fontsize=10)
    figures.save_figure(fig, out_dir / "figures" / "tuning_curves")
    return caption
