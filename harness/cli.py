"""Command line: `python -m harness {run,plan,status,report,data} ...`.

Exit codes: 0 success; 1 some jobs failed (their logs are named); 2 bad input (file, key, data);
3 some jobs are running in another process (not run here: run the same command again once it ends);
130 interrupted (finished jobs are kept: run the same command again to resume). A closed stdout (`| head`) ends
quietly: exit 0, or 141 for a `run` it cut short.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import select
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from harness import __version__, plugins
from harness.api import CACHE_ENV, resolve_study
from harness.errors import HarnessError, Interrupted, disk_full
from harness.ranges import flag_type

EXIT_ELSEWHERE = 3  # `run`: no job failed, but some are running in another process (their lock was held)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command == "run":
        _stop_on_signals()
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, where a reader that has gone can be told apart (below), not at exit
        return code
    except Interrupted as e:
        name = signal.Signals(e.signum).name
        print(f"\nharness: stopped by {name}: finished jobs are kept and the tables rebuilt; jobs in flight "
              "stopped at their last checkpoint; run the same command again to resume", file=sys.stderr)
        return 128 + e.signum
    except HarnessError as e:
        print(f"harness: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an I/O error no stage anticipated: name the file, never a raw traceback
        if isinstance(e, BrokenPipeError) and _stdout_gone():
            return _reader_gone(args.command)
        print(f"harness: error: {_os_error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nharness: interrupted; finished jobs are kept: run the same command again to resume",
              file=sys.stderr)
        return 130


def _os_error_message(error: OSError) -> str:
    full = disk_full(None, error)
    if full is not None:
        return str(full)
    if error.errno == errno.ELOOP and error.filename:  # records.no_follow refused a link
        return (f"{error.filename}: is a symbolic link, which the harness does not write through (it could point "
                "anywhere); delete the link and run again")
    where = f"{error.filename}: " if error.filename else ""
    return (f"{where}{error.strerror or error}; check that the path exists and is writable, and that the disk has "
            "space, then run again (finished jobs are kept)")


def _stdout_gone() -> bool:
    """Whether stdout is a pipe or socket whose reader has closed it (`harness status RUN | head -1`)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
    except (OSError, ValueError):  # no file descriptor (a captured stdout): not a closed pipe
        return False


def _reader_gone(command: str) -> int:
    """End quietly once stdout's reader has gone, as Unix tools do under `| head`.

    stdout is pointed at /dev/null, so that Python's flush at exit does not fail again with a message.
    Exit 0, but 141 (SIGPIPE's 128 + 13) for a `run` cut short: its reader left before the run finished,
    which is not a success (finished jobs are kept, and the same command resumes it).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE if command == "run" else 0


def _stop_on_signals() -> None:
    """SIGINT and SIGTERM (what Ctrl-C, `timeout`, Slurm and Kubernetes send) stop a run cleanly.

    The first raises Interrupted in the main thread: the runner stops its workers (each job in flight
    checkpoints and exits), rebuilds the tables and releases the study lock last. A second signal while
    that happens stops at once: every child process is killed first, so none is left behind, and one line
    says what that cost.
    """
    stopping = []

    def handler(signum, frame):
        if stopping:
            _kill_children()
            _say(f"\nharness: second {signal.Signals(signum).name}: killed every process of the study at once; jobs "
                 "in flight lost their work since their last checkpoint; finished jobs are kept: run the same "
                 "command again to resume\n")
            os._exit(128 + signum)
        stopping.append(signum)
        raise Interrupted(signum)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _say(text: str) -> None:
    """`text` on stderr from a signal handler: one write(2), never print, which may be mid-call in the main
    thread (a reentrant call raises) and whose buffer os._exit would drop."""
    try:
        os.write(2, text.encode("utf-8", "replace"))
    except OSError:  # stderr closed or a broken pipe: the exit status still tells
        pass


def _kill_children() -> None:
    try:
        import psutil
    except ImportError:  # psutil is a dependency; without it the process group still goes with a terminal
        return
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Statistically sound ablation studies of knowledge distillation for sound event detection.",
        epilog=_examples("python -m harness run ablations/table2.toml --profile quick",
                         "python -m harness status runs/table2-quick",
                         "python -m harness report runs/table2-quick --metric psds1",
                         "python -m harness rescore runs/table2-quick --set postprocess.threshold=0.4")
        + "\n\n`python -m harness COMMAND --help` for a command's options; guides: docs/README.md")
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_parser(sub)

    plan = _command(sub, "plan", "print the jobs of a study (id, variant, factors, seed, status)",
                    "python -m harness plan ablations/table2.toml --profile quick",
                    "python -m harness plan runs/table2-quick --power")
    _target_args(plan)
    plan.add_argument("--power", action="store_true", help="from the study's finished runs (e.g. a 3-seed pilot): "
                      "seeds per arm for 80 %% power per comparison, and the compute they imply")
    plan.add_argument("--metric", default="val_f1", help="the results.csv column --power plans for (default val_f1)")
    plan.set_defaults(func=cmd_plan)

    status = _command(sub, "status", "summarise done, running, failed and pending jobs of a study",
                      "python -m harness status runs/table2-quick",
                      "python -m harness status ablations/table2.toml --profile quick")
    _target_args(status)
    status.set_defaults(func=cmd_status)

    cancel = _command(sub, "cancel", "cancel the Slurm jobs of a study submitted with --backend slurm",
                      "python -m harness cancel runs/paper-paper")
    _target_args(cancel)
    cancel.set_defaults(func=cmd_cancel)

    report = _command(sub, "report", "tables, t-tests and plots of a run directory (or summary stats, or runs made "
                      "elsewhere)",
                      "python -m harness report runs/table2-quick",
                      "python -m harness report runs/table2-quick --metric psds1 --out /tmp/table2-psds1",
                      "python -m harness report --summary ablations/published/paper_validation.toml",
                      "python -m harness report --results desed_runs.csv --metric psds1 --study desed_beats.toml",
                      description="Tables, t-tests and plots of a run directory, with the runs it lacks and why.\n"
                      "The run directory is written only where it is writable (its results tables, cached\n"
                      "clip-level intervals): a read-only one is reported all the same.")
    report.add_argument("run_dir", nargs="?", type=Path, help="runs/<study>")
    report.add_argument("--summary", type=Path, help="a TOML/CSV of published mean, sd, n and comparisons")
    report.add_argument("--results", type=Path, metavar="FILE.csv", help="runs made elsewhere, one line per run: "
                        "variant, seed, metric columns, optional factor columns (docs/report.md)")
    report.add_argument("--study", type=Path, metavar="STUDY.toml", help="with --results: the comparisons, tables "
                        "and pairing of this ablation file (default: every pair of variants, unpaired)")
    _report_dir_args(report, "the run directory's name (plus -METRIC and -rescore-NAME when given) or the "
                     "--summary or --results file's")
    report.add_argument("--test", choices=("student", "welch"), default="student", help="t-test of Table 4")
    report.add_argument("--metric", default="f1", help="the metric of Tables 1-4 and the figures: f1 (the paper's "
                        "event F1, default), segment_f1, psds1, psds2, intersection_f1, collar_f1 (both splits) or "
                        "one column such as val_psds1; with --results, any column of numbers")
    report.add_argument("--rescore", metavar="NAME", help="build on runs/<run>/rescore/NAME (harness rescore)")
    report.add_argument("--cache", type=Path, default=None, help="where the run's shared stages are, for the "
                        f"clip-level bootstrap and PSD-ROC (default: ${CACHE_ENV} or ~/.cache/harness)")
    report.set_defaults(func=cmd_report)
    _rescore_parser(sub)

    reproduce = _command(sub, "reproduce-table", "the paper's Table 4 against the committed reports of the demo's "
                         "runs: direction, t, p, convergence and whether each comparison reproduces",
                         "python -m harness reproduce-table --out docs/reproduction.md",
                         "python -m harness reproduce-table --reports /tmp/reports")
    reproduce.add_argument("--reports", type=Path, default=Path("reports"), metavar="DIR", help="the folder of "
                           "reports to read: paper-published and table{1,2,3}-quick[-long] (default: reports)")
    reproduce.add_argument("--out", type=Path, default=None, metavar="FILE.md", help="write the Markdown page "
                           "there (default: print it)")
    reproduce.set_defaults(func=cmd_reproduce_table)

    data = _command(sub, "data", "the built-in synthetic corpus and DESED checks",
                    "python -m harness data synth /tmp/corpus --size tiny",
                    "python -m harness data check /path/to/DESED")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = _command(data_sub, "synth", "generate the synthetic DESED-format corpus",
                     "python -m harness data synth /tmp/corpus --size tiny --seed 0")
    synth.add_argument("out", type=Path)
    synth.add_argument("--size", choices=("tiny", "quick"), default="quick")
    synth.add_argument("--seed", type=flag_type("--seed"), default=0)
    synth.set_defaults(func=cmd_synth)
    check = _command(data_sub, "check", "read a DESED root, make the data checks of `run`, print the clips per "
                     "subset", "python -m harness data check /path/to/DESED --skip-missing")
    check.add_argument("root", type=Path)
    check.add_argument("--skip-missing", action="store_true", help="skip audio files that are missing")
    check.set_defaults(func=cmd_check)
    return parser


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _command(sub, name: str, summary: str, *examples: str, description: str | None = None):
    """A subcommand whose --help ends with example lines (kept as written: they are commands to copy)."""
    return sub.add_parser(name, help=summary, description=description or summary[:1].upper() + summary[1:] + ".",
                          epilog=_examples(*examples), formatter_class=argparse.RawDescriptionHelpFormatter)


def _run_parser(sub) -> None:
    """`run`, its options grouped: what to run, where it runs, seeds and steps, failures, the report."""
    run = _command(sub, "run", "run an ablation study: shared stages, every job, tables, report",
                   "python -m harness run ablations/table2.toml --profile quick",
                   "python -m harness run ablations/table2.toml --profile quick --set train.steps=3000 --jobs 2",
                   "python -m harness run ablations/paper.toml --data /shared/DESED --backend slurm --gpus-per-job 1",
                   "python -m harness run ablations/table2.toml --profile quick --until-decided --max-seeds 10")
    what = run.add_argument_group("what to run")
    _study_args(what)
    what.add_argument("--name", help="the run directory's name under --runs (default: <study>-<profile>, plus a "
                      "digest of the overrides when there are any)")
    where = run.add_argument_group("where it runs")
    where.add_argument("--backend", choices=plugins.executors.names(), default="local",
                       help="local processes (default), a Dask cluster, Slurm (submit and exit), or in this process "
                       "(debugging)")
    where.add_argument("--jobs", type=flag_type("--jobs"), default=None,
                       help="parallel jobs (default: one per CPU core)")
    where.add_argument("--threads", type=flag_type("--threads"), default=None, help="threads per job (default: 1)")
    where.add_argument("--jobs-per-gpu", type=flag_type("--jobs-per-gpu"), default=1,
                       help="jobs sharing one GPU (CUDA only)")
    where.add_argument("--cluster", choices=("slurm",), help="with --backend dask: start the Dask workers as Slurm "
                       "jobs (dask-jobqueue), from the [cluster] table and its flags; --jobs workers (default 2)")
    where.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://127.0.0.1:8786")
    where.add_argument("--dask-resources", help="Dask worker resources each job needs, e.g. GPU=1")
    _cluster_args(run)
    rounds = run.add_argument_group("seeds and steps decided as the study runs")
    rounds.add_argument("--until-decided", action="store_true", help="run seeds in rounds; stop adding seeds to a "
                        "comparison once decided (group-sequential boundary, family error at 0.05)")
    rounds.add_argument("--max-seeds", type=flag_type("--max-seeds"), default=None,
                        help="with --until-decided: the last look (default 10)")
    rounds.add_argument("--looks", default=None, help="with --until-decided: seeds per arm at each look, e.g. "
                        "3,5,10")
    rounds.add_argument("--until-converged", action="store_true", help="double train.steps (every variant alike, "
                        "each budget its own run directory) until every run's validation F1 has converged (the "
                        "report's rule), up to --max-steps")
    rounds.add_argument("--max-steps", type=flag_type("--max-steps"), default=None,
                        help="with --until-converged: the cap on train.steps (default: 8x the study's own)")
    failures = run.add_argument_group("failures and resuming (the same command resumes a stopped study)")
    failures.add_argument("--job-timeout", type=flag_type("--job-timeout", float), default=None, metavar="SECONDS",
                          help="stop an attempt of a job after this long (recorded TimedOut, its checkpoint kept)")
    failures.add_argument("--retries", type=flag_type("--retries"), default=1,
                          help="more attempts for a job whose worker died, was preempted or timed out; it resumes "
                          "from its checkpoint (default 1; never for a job that failed on its own, e.g. a "
                          "diverged loss)")
    failures.add_argument("--rerun-failed", action="store_true", help="run jobs that failed before again")
    failures.add_argument("--force", action="store_true", help="run every job again, finished ones included")
    report = run.add_argument_group("the report at the end")
    _report_dir_args(report, "runs/<run>'s name")
    report.add_argument("--no-report", action="store_true", help="skip the report at the end")
    report.add_argument("--test", choices=("student", "welch"), default="student", help="t-test of Table 4")
    run.set_defaults(func=cmd_run)


def _report_dir_args(p: argparse.ArgumentParser, name: str) -> None:
    """Where the report goes, spelled alike on `run` and `report`: its own folder, or a folder of reports."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=None, metavar="DIR", help="the report's own folder (report.md, "
                       "report.html, tables/, figures/)")
    where.add_argument("--reports", type=Path, default=None, metavar="DIR", help=f"a folder of reports: the report "
                       f"goes into DIR/NAME, NAME being {name} (default: reports)")


def _cluster_args(p: argparse.ArgumentParser) -> None:
    """The [cluster] table's keys as flags (a flag wins over the table)."""
    g = p.add_argument_group("Slurm resources per task (override the study's [cluster] table)")
    g.add_argument("--partition")
    g.add_argument("--account")
    g.add_argument("--qos")
    g.add_argument("--gpus-per-job", dest="gpus", type=flag_type("--gpus-per-job"),
                   help="GPUs per student job and teacher member")
    g.add_argument("--cpus-per-job", dest="cpus", type=flag_type("--cpus-per-job"))
    g.add_argument("--mem-gb", dest="mem_gb", type=flag_type("--mem-gb", float))
    g.add_argument("--time", help="time limit per task: minutes, HH:MM:SS or D-HH:MM:SS (a job past it resumes "
                   "from its checkpoint in a requeued run)")
    g.add_argument("--sbatch", dest="extra", action="append", default=None, metavar="OPTION",
                   help="a further sbatch option, e.g. --sbatch=--constraint=a100 (repeatable)")


def _cluster_of(args, study):
    from harness.study.cluster import KEYS, with_flags

    flags = {k: getattr(args, k, None) for k in KEYS if k not in ("array_parallelism", "signal_delay_s")}
    return with_flags(study.spec.cluster, flags)


def _study_args(p: argparse.ArgumentParser, what: str = "an ablation file, e.g. ablations/table2.toml") -> None:
    p.add_argument("file", type=Path, help=what)
    p.add_argument("--profile", default="paper", help="paper (DESED, SPEC 2.5; default), quick, quick-long (converged, slower) or tiny")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set train.steps=500 --set seeds=3 --set data.root=/x")
    p.add_argument("--data", help="DESED root (or set $HARNESS_DESED_ROOT)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="runs directory (default: runs)")
    p.add_argument("--cache", type=Path, default=None, help=f"cache directory (default: ${CACHE_ENV} or "
                   "~/.cache/harness)")


def _target_args(p: argparse.ArgumentParser) -> None:
    """plan/status: a study file (resolved with the same flags as `run`) or a run directory (read as recorded)."""
    _study_args(p, "an ablation file (with the flags of `run`), or a run directory runs/<run> (read as recorded)")
    p.add_argument("--name", help="the run directory's name under --runs, as given to `run`")


def _resolved(args, more: tuple[str, ...] = ()):
    """The study of the command line (its --set overrides, then `more`) and the cache directory."""
    return resolve_study(args.file, args.profile, [*args.overrides, *more], args.data, args.cache)


def cmd_run(args) -> int:
    study, cache = _resolved(args)  # bad input fails here, before any worker starts (this import is light)
    if not (args.backend == "local" and (args.jobs is None or args.jobs >= 1)):
        return _run(args, study, cache)
    from harness.study import workers

    # Before the imports below: the workers load torch while this process does the same.
    workers.warm_up(workers.default_workers(args.jobs), workers.default_threads(args.threads))
    try:
        return _run(args, study, cache)
    finally:
        # Every job has ended or stopped here: end the workers now rather than in loky's exit handler, which
        # waits for each one, and for one still warming up (a study refused after the warm-up began) seconds.
        workers.discard()


def _run(args, study, cache) -> int:
    from harness.study.runner import RunOptions

    options = RunOptions(runs_dir=args.runs, cache_dir=cache, backend=args.backend, jobs=args.jobs,
                         threads=args.threads, scheduler=args.scheduler, dask_resources=args.dask_resources,
                         jobs_per_gpu=args.jobs_per_gpu, name=args.name, rerun_failed=args.rerun_failed,
                         force=args.force, job_timeout=args.job_timeout, retries=args.retries)
    if args.backend == "slurm":
        return _submit(args, study, options)
    if args.cluster == "slurm":
        return _dask_on_slurm(args, study, options)
    return _run_and_report(args, study, options)


def _submit(args, study, options) -> int:
    from harness.study.slurm_run import submit_study

    if args.until_decided:
        raise HarnessError("--until-decided decides between rounds, so it needs a driver that waits: use "
                           "--backend dask --cluster slurm for it on a Slurm cluster")
    out = submit_study(study, options, _cluster_of(args, study))
    if not out.ids:
        print(f"slurm: nothing to submit: {out.skipped} jobs are done or still queued (see `python -m harness "
              f"status {out.run_dir}`)")
        return 0
    then = " (the rest is submitted once the tuning stage ends)" if out.waiting_for_tuning else ""
    print(f"submitted{then}; follow with `python -m harness status {out.run_dir}`, report with `python -m harness "
          f"report {out.run_dir}` once jobs finish, stop with `python -m harness cancel {out.run_dir}`")
    return 0


def _dask_on_slurm(args, study, options) -> int:
    """Dask workers as Slurm jobs (dask-jobqueue), for the length of this command."""
    import dataclasses

    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as e:
        raise HarnessError("--cluster slurm needs dask-jobqueue: pip install 'harness[dask]'") from e
    from harness.study.executors import slurm

    if args.backend != "dask":
        raise HarnessError("--cluster slurm goes with --backend dask (or use --backend slurm to submit and exit)")
    slurm.check_slurm()
    cfg = _cluster_of(args, study)
    extra = [*cfg.extra] + ([f"--gres=gpu:{cfg.gpus}"] if cfg.gpus else [])
    cluster = SLURMCluster(cores=cfg.cpus, processes=1, memory=f"{cfg.mem_gb:g}GB", walltime=cfg.time,
                           queue=cfg.partition, account=cfg.account, job_extra_directives=extra
                           + ([f"--qos={cfg.qos}"] if cfg.qos else []), log_directory=str(args.runs / "dask-slurm"),
                           worker_extra_args=["--resources", f"GPU={cfg.gpus}"] if cfg.gpus else [])
    try:
        cluster.scale(jobs=args.jobs or 2)
        options = dataclasses.replace(options, scheduler=cluster.scheduler_address,
                                      dask_resources=options.dask_resources or ("GPU=1" if cfg.gpus else None))
        return _run_and_report(args, study, options)
    finally:
        cluster.close()


def _run_and_report(args, study, options) -> int:
    from harness.study.runner import run_study

    if args.until_decided and args.until_converged:
        raise HarnessError("--until-decided and --until-converged: choose one (converge first, then decide)")
    if args.until_decided:
        from harness.study.sequential_run import run_until_decided

        outcome = run_until_decided(study, options, _looks(args))
    elif args.until_converged:
        from harness.study.converged_run import run_until_converged

        def at(steps: int):
            return _resolved(args, (f"train.steps={steps}",))[0]

        outcome = run_until_converged(at, study, options, args.max_steps or 8 * study.base.train.steps)
    else:
        outcome = run_study(study, options)
    kept, elsewhere = len(outcome.kept_failed), len(outcome.elsewhere)
    print(f"results: {outcome.run_dir / 'results.csv'} ({outcome.total} jobs: {outcome.ran} ran, "
          f"{outcome.skipped} kept from before, {len(outcome.all_failed)} failed"
          + (f", {kept} of them in an earlier run" if kept else "")
          + (f", {elsewhere} running in another process)" if elsewhere else ")"))
    if not args.no_report:
        from harness.report.build import build_report

        path = build_report(outcome.run_dir, _report_dir(args, outcome.run_dir.name), test=args.test)
        print(f"report: {path}")
    _print_elsewhere(outcome)
    if outcome.all_failed:  # until they succeed: a failed job is a missing row, on every run, not only the first
        _print_failures(outcome)
        return 1
    return EXIT_ELSEWHERE if outcome.elsewhere else 0


def _print_elsewhere(outcome) -> None:
    """The jobs another live process runs (their lock was held): not run here, not failed, not finished."""
    if not outcome.elsewhere:
        return
    n = len(outcome.elsewhere)
    print(f"{n} job{'s' if n > 1 else ''} not run here: another process is running "
          f"{'them' if n > 1 else 'it'} (its lock is held):", file=sys.stderr)
    for job, holder in outcome.elsewhere:
        print(f"  {job.variant} seed {job.seed}: {outcome.run_dir / 'jobs' / job.job_id} ({holder})", file=sys.stderr)
    print("let that process finish (or stop it), then run the same command again: it keeps what that process "
          "finished and resumes the rest", file=sys.stderr)


def _print_failures(outcome) -> None:
    """Each failed job of the plan (this run's and those kept from before): variant, seed, reason, log."""
    from harness.study.jobfiles import failure_reason

    failed, kept = outcome.all_failed, len(outcome.kept_failed)
    n = len(failed)
    print(f"{n} job{'s' if n > 1 else ''} failed" + (f" ({kept} in an earlier run, not run again)" if kept else "")
          + ":", file=sys.stderr)
    for job, log_path in failed:
        print(f"  {job.variant} seed {job.seed}: {failure_reason(outcome.run_dir, job)} (log: {log_path})",
              file=sys.stderr)
    print("their rows are missing from the results; fix the cause, then run again with --rerun-failed (finished "
          "jobs are kept)", file=sys.stderr)


def _report_dir(args, name: str) -> Path:
    """--out DIR is the report's own folder; --reports DIR a folder of reports, the report in DIR/<name>."""
    return args.out if args.out is not None else (args.reports or Path("reports")) / name


@dataclass(frozen=True)
class _Target:
    """What plan/status look at: a run directory and its jobs (id, variant, seed, phase, factors, l1, l2)."""

    run_dir: Path
    title: str
    jobs: list[tuple[str, str, int, str, dict, float | None, float | None]]
    note: str = ""


def _target(args) -> _Target:
    """A run directory given directly, or the one `run` would use for the file and flags given.

    A run directory that exists is read as recorded (study.json and job.json), so no flag needs repeating;
    a study not run yet is planned from its file (reading the data to know its job ids).
    """
    from harness.study.rundir import STUDY, read_study_record

    if args.file.is_dir():
        return _recorded(args.file, read_study_record(args.file))
    from harness.study.runner import RunOptions, run_dir_of

    study, cache = _resolved(args)
    run_dir = run_dir_of(study, RunOptions(runs_dir=args.runs, cache_dir=cache, name=args.name))
    if (run_dir / STUDY).exists():
        return _recorded(run_dir, read_study_record(run_dir))
    from harness.study.plan import expand, expand_tuning
    from harness.study.stages import StageKeys, read_data

    keys = StageKeys(read_data(study.data, cache), study.spec.teacher_seed)
    jobs = expand_tuning(study, keys) + expand(study, None, keys)
    rows = [(j.job_id, j.variant, j.seed, j.phase, j.factors, j.config.loss.lambda1, j.config.loss.lambda2)
            for j in jobs]
    others = sorted(p.parent.name for p in Path(args.runs).glob(f"{study.spec.name}-*/{STUDY}"))
    note = f"not run yet; other runs of this study under {args.runs}: {', '.join(others)}" if others else \
        "not run yet"
    return _Target(run_dir, f"study {study.spec.name} ({study.profile})", rows, note)


def _recorded(run_dir: Path, record) -> _Target:
    from harness.records import JobRecord, RecordError, read_record

    rows = []
    for job_id in (*record.tune_jobs, *record.jobs):
        try:
            j = read_record(run_dir / "jobs" / job_id / "job.json", JobRecord)
            rows.append((job_id, j.variant, j.seed, j.phase, j.factors, j.config["loss"]["lambda1"],
                         j.config["loss"]["lambda2"]))
        except RecordError:
            rows.append((job_id, "?", -1, "?", {}, None, None))
    r = record.resolution
    overrides = " ".join(f"--set {o}" for o in r.overrides) or "no overrides"
    return _Target(run_dir, f"study {record.name} ({r.profile}, {overrides})", rows)


def _looks(args) -> tuple[int, ...]:
    """--looks 3,5,10 and --max-seeds N -> the looks (seeds per arm), ending at --max-seeds."""
    top = args.max_seeds or 10
    if args.looks is None:
        return tuple(n for n in (3, 5, 10) if n < top) + (top,)
    try:
        looks = tuple(int(x) for x in args.looks.split(","))
    except ValueError as e:
        raise HarnessError(f"--looks {args.looks!r}: expected seeds per arm separated by commas, e.g. 3,5,10") from e
    if args.max_seeds is not None and looks[-1] != args.max_seeds:
        raise HarnessError(f"--looks {args.looks} must end at --max-seeds {args.max_seeds}")
    return looks


_PAPER_COLUMNS = {"curriculum": 10, "pseudolabels": 12, "masking": 8, "augmentation": 8}  # name -> width


def cmd_plan(args) -> int:
    from harness.plugins import level_text
    from harness.study.jobfiles import status_of

    target = _target(args)
    if args.power:
        return _print_power(target.run_dir, args.metric)
    print(f"{target.title}: {len(target.jobs)} jobs -> {target.run_dir}" + (f" ({target.note})" if target.note else ""))
    # The paper's four factors, then any other factor of the study (a column each, named by its key).
    extra = list(dict.fromkeys(k for *_, f, _l1, _l2 in target.jobs for k in f if k not in _PAPER_COLUMNS))
    widths = {**_PAPER_COLUMNS, **{k: max(len(k), 6) for k in extra}}
    wide = max([16, *(len(variant) for _, variant, *_ in target.jobs)])
    print(f"{'job id':<13} {'phase':<9} {'variant':<{wide}} "
          + " ".join(f"{('augment' if k == 'augmentation' else k):<{w}}" for k, w in widths.items())
          + f" {'l1':>5} {'l2':>5} {'seed':>5}  status")
    for job_id, variant, seed, phase, f, l1, l2 in target.jobs:
        levels = " ".join(f"{level_text(f.get(k, '?')):<{w}}" for k, w in widths.items())
        print(f"{job_id:<13} {phase:<9} {variant:<{wide}} {levels} {l1!s:>5} {l2!s:>5} "
              f"{seed:>5}  {status_of(target.run_dir, job_id)}")
    return 0


def _print_power(run_dir: Path, metric: str) -> int:
    """`plan --power`: the seed plan from the finished runs of a run directory."""
    import pandas as pd

    from harness.report import tables
    from harness.study.rundir import read_study_record
    from harness.study.runner import rebuild_tables

    record = read_study_record(run_dir)
    if not record.comparisons:
        raise HarnessError(f"{run_dir}: the study declares no [[comparison]]: there is nothing to plan seeds for")
    results = pd.read_csv(rebuild_tables(run_dir)[0])
    if metric not in results.columns:
        raise HarnessError(f"--metric {metric!r}: not a column of {run_dir / 'results.csv'}; e.g. val_f1, test_f1")
    plan = tables.seed_plan_from_results(results, record.comparisons, metric=metric, paired=record.paired)
    print(tables.seed_plan_text(plan, metric))
    return 0


def cmd_status(args) -> int:
    from collections import Counter

    from harness.study.jobfiles import status_of

    target = _target(args)
    replicates = [j for j in target.jobs if j[3] != "tune"]
    states = {j[0]: status_of(target.run_dir, j[0]) for j in replicates}
    counts = Counter(states.values())
    print(f"{target.title} in {target.run_dir}: " + ", ".join(
        f"{counts.get(s, 0)} {s}" for s in ("done", "running", "failed", "interrupted", "damaged", "pending"))
          + f" of {len(replicates)}" + (f" ({target.note})" if target.note else ""))
    from harness.study.jobfiles import attempts, failure_reason

    for job_id, variant, seed, *_ in replicates:
        directory = target.run_dir / "jobs" / job_id
        tries = attempts(directory)
        if states[job_id] in ("failed", "damaged", "running", "interrupted") or tries > 1:
            why = f"{failure_reason(target.run_dir, job_id)}; " if states[job_id] == "failed" else ""
            print(f"  {states[job_id]}: {variant} seed {seed} ({tries} attempt{'s' if tries != 1 else ''}): "
                  f"{why}{directory / 'log.txt'}")
    _print_slurm(target.run_dir, {j[0]: (j[1], j[2]) for j in target.jobs}, states)
    return 0


def _print_slurm(run_dir: Path, jobs: dict[str, tuple[str, int]], states: dict[str, str]) -> None:
    """Each submitted task's Slurm state beside the harness's own (runs submitted with --backend slurm)."""
    from harness.study.jobfiles import read_submissions, slurm_states

    if not read_submissions(run_dir):
        return
    from collections import Counter

    slurm = slurm_states(run_dir)
    mine = {k: v for k, v in slurm.items() if k in jobs}
    counts = Counter(state for _, state in mine.values())
    print("slurm: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) + " ('gone': Slurm no longer "
          "lists the job; the harness's state says how it ended)")
    for key, (slurm_id, state) in sorted(mine.items(), key=lambda kv: kv[1][0]):
        variant, seed = jobs[key]
        print(f"  {slurm_id:<12} {state.lower():<11} {states.get(key, '?'):<11} {variant} seed {seed}")
    for key, (slurm_id, state) in sorted(slurm.items()):
        if key not in jobs and state not in ("gone", "COMPLETED"):
            print(f"  {slurm_id:<12} {state.lower():<11} {'stage':<11} {key}")


def cmd_cancel(args) -> int:
    from harness.study.jobfiles import cancel_run, read_submissions

    target = _target(args)
    if not read_submissions(target.run_dir):
        raise HarnessError(f"{target.run_dir}: nothing was submitted to Slurm for this run (cancel is for "
                           "--backend slurm; stop a local or Dask run with Ctrl-C)")
    ids = cancel_run(target.run_dir)
    print(f"cancelled {len(ids)} Slurm jobs of {target.run_dir}" + (f": {' '.join(ids)}" if ids else
                                                                   " (none was queued or running)"))
    print("finished jobs are kept; `python -m harness run ... --backend slurm` submits the rest again")
    return 0


def cmd_report(args) -> int:
    from harness.report.build import build_report, build_summary_report

    if args.results is not None or args.study is not None:
        return _report_external(args)
    if args.summary is not None:
        out = _report_dir(args, args.summary.stem)
        print(f"report: {build_summary_report(args.summary, out, test=args.test)}")
        return 0
    if args.run_dir is None:
        raise HarnessError("report: give a run directory (runs/<study>), --summary FILE or --results FILE.csv")
    from harness.study.rundir import read_study_record

    read_study_record(args.run_dir)  # a clear error when it is not a run directory
    suffix = ("" if args.metric == "f1" else f"-{args.metric}") + (f"-rescore-{args.rescore}" if args.rescore else "")
    with _fresh_tables(args.run_dir) as tables_dir:
        path = build_report(args.run_dir, _report_dir(args, args.run_dir.name + suffix), test=args.test,
                            metric=args.metric, rescore=args.rescore, cache_dir=args.cache,
                            tables_dir=None if args.rescore else tables_dir)
    print(f"report: {path}")
    return 0


def cmd_reproduce_table(args) -> int:
    from harness.report.reproduction import write_reproduction

    text = write_reproduction(args.reports, args.out)
    if args.out is None:
        sys.stdout.write(text)
    else:
        print(f"written: {args.out}")
    return 0


def _report_external(args) -> int:
    """`report --results FILE.csv [--study STUDY.toml]`: the report of runs made elsewhere."""
    from harness.report.external import build_external_report

    given = [flag for flag, value in (("a run directory", args.run_dir), ("--summary", args.summary),
                                      ("--rescore", args.rescore), ("--cache", args.cache)) if value is not None]
    if args.results is None:
        raise HarnessError("report: --study goes with --results FILE.csv (a run directory has its own study)")
    if given:
        raise HarnessError(f"report --results: {', '.join(given)} cannot go with it (the file holds every number)")
    suffix = "" if args.metric == "f1" else "-" + re.sub(r"[^A-Za-z0-9_.+-]+", "_", args.metric)
    path = build_external_report(args.results, _report_dir(args, args.results.stem + suffix), test=args.test,
                                 metric=args.metric, study_file=args.study)
    print(f"report: {path}")
    return 0


@contextmanager
def _fresh_tables(run_dir: Path) -> Iterator[Path | None]:
    """The run's tables rebuilt from its jobs' results (the truth; the tables are derived): in the run directory
    (None), or, where it is read-only (an archive, a colleague's run), in a temporary folder for this report."""
    import tempfile

    from harness.study.runner import rebuild_tables

    if os.access(run_dir, os.W_OK):
        rebuild_tables(run_dir)
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="harness-tables-") as tmp:
        rebuild_tables(run_dir, into=Path(tmp))
        yield Path(tmp)


def _rescore_parser(sub) -> None:
    rescore = _command(sub, "rescore", "score a run's saved probabilities again under other post-processing or "
                       "metric settings, without retraining",
                       "python -m harness rescore runs/table2-quick --set postprocess.threshold=0.4 --name t04",
                       "python -m harness report runs/table2-quick --rescore t04")
    rescore.add_argument("run_dir", type=Path, help="runs/<run>")
    rescore.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="e.g. --set postprocess.threshold=0.4 --set psds.median_filter=true")
    rescore.add_argument("--name", help="the table's folder under runs/<run>/rescore/ (default: a digest of the "
                         "settings)")
    rescore.add_argument("--no-psds", action="store_true", help="skip the threshold-free metrics (PSDS, F1 at 0.5)")
    rescore.add_argument("--jobs", type=flag_type("--jobs"), default=None,
                         help="parallel processes (default: one per CPU core)")
    rescore.add_argument("--cache", type=Path, default=None, help=f"where the run's shared stages are (default: "
                         f"${CACHE_ENV} or ~/.cache/harness)")
    rescore.set_defaults(func=cmd_rescore)


def cmd_rescore(args) -> int:
    from harness.study.rescore import parse_settings, rescore_run

    settings = parse_settings(args.overrides, threshold_free=not args.no_psds)  # bad keys fail before any job
    outcome = rescore_run(args.run_dir, settings, name=args.name, cache_dir=args.cache, jobs=args.jobs)
    print(f"rescored {len(outcome.record.jobs)} jobs: {outcome.results} (settings: "
          f"{outcome.directory / 'settings.json'}; report: python -m harness report {args.run_dir} --rescore "
          f"{outcome.record.name})")
    return 0


def cmd_synth(args) -> int:
    import time

    from harness.data.synth import generate

    start = time.perf_counter()
    counts = generate(args.out, args.size, args.seed)
    print(f"synthetic corpus ({args.size}, seed {args.seed}) in {args.out} "
          f"({time.perf_counter() - start:.1f} s)")
    return _print_counts(args.out, skip_missing=False) if counts else 0


def cmd_check(args) -> int:
    return _print_counts(args.root, args.skip_missing)


def _print_counts(root: Path, skip_missing: bool) -> int:
    from harness.config import DataConfig, FeatureConfig
    from harness.data.desed import check_audio_against_labels, load_dataset
    from harness.data.encoder import frames_needed
    from harness.data.vocabulary import study_classes

    data = DataConfig(root=str(root), skip_missing=skip_missing)
    classes = study_classes(data, Path(root))  # what `run` derives: the labels of the strong training and weak TSVs
    subsets = load_dataset(data, Path(root), classes=classes)
    strong = check_audio_against_labels(subsets)  # what `run` checks before any work: data that passes here runs
    # Reading every header finds unreadable audio now, with its name, rather than mid-extraction.
    durations = {name: [c.duration for c in subset.clips] for name, subset in subsets.items()}
    every = [d for ds in durations.values() for d in ds]
    longest = max(every, default=0.0)
    for name, subset in subsets.items():
        if not subset.clips and not subset.tsv.exists():
            print(f"  {name:<11} absent (no {subset.tsv}): the study has no {name} clips")
            continue
        n_events = sum(len(c.events or ()) for c in subset.clips)
        extra = f", {n_events} events" if subset.kind == "strong" else ""
        short = sum(d < longest - 1e-3 for d in durations[name])
        print(f"  {name:<11} {len(subset.clips):>6} clips ({subset.kind}{extra}; {short} shorter than "
              f"{longest:g} s)")
    print(f"  classes     {len(classes)}: {', '.join(classes)}")
    print(f"  clip length {min(every, default=0.0):.2f} to {longest:.2f} s")
    longest_strong, hop = max((d for ds in strong.values() for d in ds), default=0.0), FeatureConfig().hop_seconds
    print(f"  frames      {frames_needed(longest_strong, hop)} of {hop:g} s cover the longest strong clip "
          f"({longest_strong:.2f} s): features.n_frames >= {frames_needed(longest_strong, hop)} at "
          f"features.hop_seconds = {hop:g} (seconds / hop, rounded up, at another hop)")
    return 0
