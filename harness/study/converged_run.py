"""`harness run FILE --until-converged --max-steps N`: raise the step budget until every run has converged.

Each round runs the whole study at one budget (train.steps, the same for every variant, so that no
comparison mixes budgets), then applies the report's convergence rule (harness.report.convergence) to every
run's validation curve. While any variant has a run that had not converged, the budget doubles, up to
--max-steps; each round is its own run directory (its resolution differs by train.steps), so every
budget's results stay side by side and a stopped search resumes with the same command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from harness.errors import ConfigError
from harness.study.plan import ResolvedStudy
from harness.study.runner import RunOptions, RunOutcome, run_dir_of, run_study


def run_until_converged(resolve_at: Callable[[int], ResolvedStudy], first: ResolvedStudy, options: RunOptions,
                        max_steps: int, echo: Callable[[str], None] = print) -> RunOutcome:
    """Rounds of `resolve_at(steps)` from the study's own budget, doubling, until converged or `max_steps`.

    Raises:
        ConfigError: --max-steps below the study's own budget, or --name (each round needs its own directory).
    """
    steps = first.base.train.steps
    if max_steps < steps:
        raise ConfigError(f"--max-steps {max_steps} is below the study's own train.steps = {steps}")
    if options.name:
        raise ConfigError("--until-converged gives each budget its own run directory: leave out --name")
    study = first
    while True:
        echo(f"until converged: round at train.steps = {steps}")
        outcome = run_study(study, options, echo)
        flagged = unconverged_variants(run_dir_of(study, options))
        if not flagged and not outcome.elsewhere:  # a job another process runs is no converged one yet
            echo(f"until converged: every run converged at train.steps = {steps} ({outcome.run_dir})")
            return outcome
        if outcome.failed or outcome.elsewhere or steps * 2 > max_steps:
            why = ("jobs failed" if outcome.failed else "jobs are running in another process" if outcome.elsewhere
                   else f"--max-steps {max_steps} reached")
            echo(f"until converged: stopped ({why}) at train.steps = {steps}; not converged: {', '.join(flagged)} "
                 "(the report flags them)")
            return outcome
        echo(f"until converged: not converged at {steps} steps: {', '.join(flagged)}; doubling the budget")
        steps *= 2
        study = resolve_at(steps)


def unconverged_variants(run_dir: Path) -> list[str]:
    """The variants of a run with at least one run whose validation curve had not converged."""
    from harness.report.convergence import assess, summarize

    results = pd.read_csv(Path(run_dir) / "results.csv")
    verdicts: dict[str, list] = {}
    for row in results.itertuples():
        curve = pd.read_csv(Path(run_dir) / "jobs" / row.job_id / "metrics.csv")
        verdicts.setdefault(row.variant, []).append(assess(curve["val_f1"], curve["epoch"]))
    return sorted(v for v, runs in verdicts.items() if summarize(runs).flagged)
