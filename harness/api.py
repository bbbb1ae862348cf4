"""The harness from Python (a notebook, a script): load a study, plan it, run it, read its results, report.

    from harness import api

    study = api.load("ablations/table2.toml", profile="tiny", overrides=["train.steps=20"])
    study.plan()                        # a DataFrame: one row per job, with its factors and status
    outcome = study.run(jobs=2)         # the same run as `python -m harness run` (local, dask, inprocess)
    study.results()                     # results.csv as a DataFrame
    study.report("reports/mine")        # report.md, report.html, tables and figures; returns report.md

The command line is a thin layer over these calls: `harness run FILE` is `load(FILE).run(...)` plus printing,
`plan` prints `plan()`, `report RUN` is `report_run(RUN)`. Every error is a harness.errors.HarnessError
subclass with the message the command line prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from harness.study.plan import ResolvedStudy

if TYPE_CHECKING:  # pandas is imported where a table is made: the command line starts without it
    import pandas as pd

CACHE_ENV = "HARNESS_CACHE"


def default_cache() -> Path:
    """$HARNESS_CACHE, else ~/.cache/harness: corpora, features and shared stages, reused by every study."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "harness")


def resolve_study(file: str | Path, profile: str = "paper", overrides: Sequence[str] = (), data: str | None = None,
                  cache_dir: str | Path | None = None) -> tuple[ResolvedStudy, Path]:
    """An ablation file under a profile and `--set` overrides (KEY=VALUE strings), and the cache it uses.

    Raises:
        ConfigError: the file, a key or a value is invalid (the message names them).
    """
    from harness.study.plan import resolve
    from harness.study.spec import load_study, split_overrides

    spec = load_study(Path(file))
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    texts = tuple(overrides)
    return resolve(spec, profile, cache, split_overrides(list(texts)), data, texts), cache


@dataclass(frozen=True)
class Study:
    """A resolved study and where its runs and cache live; each method is one command of the CLI."""

    resolved: ResolvedStudy
    cache_dir: Path
    runs_dir: Path = Path("runs")

    @property
    def run_dir(self) -> Path:
        """runs/<study>-<profile>[-<overrides digest>]: where `run` writes (as the CLI names it)."""
        from harness.study.runner import RunOptions, run_dir_of

        return run_dir_of(self.resolved, RunOptions(runs_dir=self.runs_dir, cache_dir=self.cache_dir))

    def plan(self) -> "pd.DataFrame":
        """Every job of the study, nothing run: job_id, phase, variant, seed, one column per factor, lambda1,
        lambda2 and status (done, failed, pending, ...). Reads the data to know the job ids."""
        import pandas as pd

        from harness.study.jobfiles import status_of
        from harness.study.plan import expand, expand_tuning
        from harness.study.stages import StageKeys, read_data

        keys = StageKeys(read_data(self.resolved.data, self.cache_dir), self.resolved.spec.teacher_seed)
        jobs = expand_tuning(self.resolved, keys) + expand(self.resolved, None, keys)
        return pd.DataFrame([{"job_id": j.job_id, "phase": j.phase, "variant": j.variant, "seed": j.seed,
                              **j.factors, "lambda1": j.config.loss.lambda1, "lambda2": j.config.loss.lambda2,
                              "status": status_of(self.run_dir, j.job_id)} for j in jobs])

    def run(self, backend: str = "local", jobs: int | None = None, threads: int | None = None,
            scheduler: str | None = None, rerun_failed: bool = False, force: bool = False, **options):
        """Run every job not finished yet and write the tidy tables (harness.study.runner.run_study).

        Args:
            backend: "local" (processes on this machine), "dask" (with `scheduler`), or "inprocess".
            jobs, threads, scheduler, rerun_failed, force: as the `run` command's flags.
            options: any other field of harness.study.runner.RunOptions (job_timeout, retries, ...).

        Returns:
            harness.study.runner.RunOutcome: run_dir, total, ran, skipped, failed, ...
        """
        from harness.study.runner import RunOptions, run_study

        run_options = RunOptions(runs_dir=self.runs_dir, cache_dir=self.cache_dir, backend=backend,  # type: ignore[arg-type]
                                 jobs=jobs, threads=threads, scheduler=scheduler, rerun_failed=rerun_failed,
                                 force=force, **options)
        return run_study(self.resolved, run_options, echo=lambda text: None)

    def results(self) -> "pd.DataFrame":
        """results.csv of the run: one row per finished job (harness.schema), factor columns included.

        Raises:
            DataError: the study has not run yet.
        """
        return read_results_table(self.run_dir)

    def report(self, out: str | Path | None = None, metric: str = "f1", test: str = "student") -> Path:
        """Build the report of the run (default folder: reports/<run>); returns its report.md."""
        return report_run(self.run_dir, out if out is not None else Path("reports") / self.run_dir.name,
                          metric=metric, test=test)

    def with_overrides(self, *overrides: str) -> "Study":
        """The same study with more `--set` overrides (a new run folder when they change numbers)."""
        texts = (*self.resolved.override_texts, *overrides)
        resolved, _ = resolve_study(self.resolved.spec.path, self.resolved.profile, texts,
                                    None, self.cache_dir)
        return replace(self, resolved=resolved)


def load(file: str | Path, profile: str = "paper", overrides: Sequence[str] = (), data: str | None = None,
         cache_dir: str | Path | None = None, runs_dir: str | Path = "runs") -> Study:
    """Load an ablation file as the `run` command would with the same flags (see Study)."""
    resolved, cache = resolve_study(file, profile, overrides, data, cache_dir)
    return Study(resolved=resolved, cache_dir=cache, runs_dir=Path(runs_dir))


def read_results_table(run_dir: str | Path) -> "pd.DataFrame":
    """results.csv of a run folder, rebuilt from its job results first (so it is current)."""
    import pandas as pd

    from harness.errors import DataError
    from harness.study.rundir import STUDY
    from harness.study.runner import rebuild_tables

    if not (Path(run_dir) / STUDY).is_file():
        raise DataError(f"{run_dir}: no study.json; run the study first (Study.run or `python -m harness run`)")
    return pd.read_csv(rebuild_tables(Path(run_dir))[0])


def report_run(run_dir: str | Path, out: str | Path, metric: str = "f1", test: str = "student") -> Path:
    """The report of a run folder into `out` (tables, Table 4, statistics, figures); returns report.md."""
    from harness.report.build import build_report

    return build_report(Path(run_dir), Path(out), test=test, metric=metric)  # type: ignore[arg-type]
