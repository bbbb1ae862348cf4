"""`harness run FILE --until-decided`: seeds in rounds, each comparison's arms growing until it is decided.

The design (harness.report.sequential) holds the family's type I error at alpha over every look; this module
only runs rounds: every variant to the first look, then, after each round, the seeds that the still-open
comparisons need (a variant keeps getting seeds while any comparison involving it is open), until every
comparison is decided or the last look is reached. The decision is recomputed from the finished runs each
time, so a stopped study resumes with the same command.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import pandas as pd

from harness.errors import ConfigError
from harness.study.plan import ResolvedStudy
from harness.study.runner import RunOptions, RunOutcome, run_dir_of, run_study

METRIC = "val_f1"  # the paper's Table 4 metric: the one the decisions are taken on


def run_until_decided(study: ResolvedStudy, options: RunOptions, looks: tuple[int, ...],
                      echo: Callable[[str], None] = print) -> RunOutcome:
    """Run `study` in rounds of seeds until every comparison is decided (see the module docstring).

    Raises:
        ConfigError: no comparison to decide, bad looks, or fewer seeds in the study than the last look.
    """
    from harness.report import sequential, tables

    spec = study.spec
    if not spec.comparisons:
        raise ConfigError(f"{spec.path}: --until-decided needs [[comparison]] entries: there is nothing to decide")
    if study.streams is not None:  # its rounds add runs in order: a design of streams would be cut unbalanced
        raise ConfigError(f"{spec.path}: seeds: --until-decided adds seeds round by round, which a design of seed "
                          "streams cannot take; give seeds as a count, or run the design without --until-decided")
    try:
        looks = sequential.validate_looks(looks, paired=spec.paired)
    except ValueError as e:
        raise ConfigError(f"--looks: {e}") from e
    if len(study.seeds) < looks[-1]:
        study = dataclasses.replace(study, seeds=tuple(range(looks[-1])))
    study = dataclasses.replace(study, seeds=study.seeds[: looks[-1]])
    design = sequential.design_sequential(looks, len(spec.comparisons), rng=np.random.default_rng(0),
                                          paired=spec.paired)
    record = {"looks": list(looks), "alpha": 0.05, "family": "holm", "spending": "kim-demets", "rho": 2.0,
              "seed": 0}
    pairs = [(c.a, c.b) for c in spec.comparisons]
    labels = [c.label for c in spec.comparisons]
    targets = {v.name: looks[0] for v in spec.variants}
    while True:
        echo(f"until decided: round with seeds per variant {targets}")
        outcome = run_study(study, options, echo, seed_counts=targets, sequential=record)
        results = pd.read_csv(run_dir_of(study, options) / "results.csv")
        scores = [tables.comparison_scores(results, a, b, METRIC, spec.paired) for a, b in pairs]
        decisions = sequential.sequential_decisions(design, scores, labels)
        for d in decisions:
            echo(f"  {d.label}: {d.status}")
        if sequential.all_decided(decisions) or outcome.failed or outcome.elsewhere:  # elsewhere: seeds missing
            return outcome
        wanted = sequential.seeds_to_run(design, pairs, decisions, [v.name for v in spec.variants])
        if all(wanted[v] <= targets[v] for v in targets):  # the last look is reached: nothing more to run
            return outcome
        targets = {v: max(targets[v], wanted[v]) for v in targets}
