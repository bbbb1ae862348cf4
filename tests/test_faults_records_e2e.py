"""Faults of issue 27, through the CLI: a study with failed jobs fails on every run and says which and why
(console, status, report); a damaged study.json gets advice true of study.json; `data check` makes the data
checks `run` makes, and a run refused for its data leaves no folder; a report of a read-only run directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from conftest import warm_cache

STUDY = """
[study]
name = "faults"
seeds = 2

[[variant]]
name = "A"

[[variant]]
name = "Diverges"
set = { "loss.lambda1" = 1e308 }
"""


def harness(*args, cwd: Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def run_args(root: Path, runs: Path, *extra) -> list:
    return ["run", root / "faults.toml", "--profile", "tiny", "--runs", runs, "--cache", root / "cache", "--name",
            "faults", "--jobs", "2", "--set", "train.steps=2", *extra]


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_corpus, tiny_stages):
    """The study run once: both jobs of "Diverges" fail (a NaN loss), both of "A" finish."""
    root = tmp_path_factory.mktemp("faults")
    (root / "faults.toml").write_text(STUDY + f'\n[data]\nroot = "{tiny_corpus}"\n')
    warm_cache(tiny_stages, root)
    first = harness(*run_args(root, root / "runs", "--no-report"), cwd=root)
    assert first.returncode == 1, first.stderr[-3000:]
    assert "2 jobs failed:" in first.stderr and "J_s is inf" in first.stderr
    return root


def test_a_rerun_with_failed_jobs_fails_again_names_them_and_the_report_says_why(study):
    run_dir = study / "runs" / "faults"
    again = harness(*run_args(study, study / "runs", "--out", study / "again"), cwd=study)
    assert again.returncode == 1, again.stderr[-3000:]
    assert "(4 jobs: 0 ran, 4 kept from before, 2 failed, 2 of them in an earlier run)" in again.stdout
    assert "2 jobs failed (2 in an earlier run, not run again):" in again.stderr
    for seed in (0, 1):
        line = next(x for x in again.stderr.splitlines() if f"Diverges seed {seed}:" in x)
        assert "TrainingDiverged: " in line and "J_s is inf at epoch 1, step 1" in line and "log.txt" in line
        assert Path(line.rsplit("(log: ", 1)[1].rstrip(")")).is_file()
    assert "--rerun-failed" in again.stderr and "Traceback" not in again.stderr
    report = (study / "again" / "report.md").read_text()  # `run --out`: the report's own folder
    assert "## Missing runs" in report and "2 of the 4 runs of the study's plan are missing" in report
    rows = [x for x in report.splitlines() if x.startswith("| Diverges |") and "| failed |" in x]
    assert len(rows) == 2 and all("| TrainingDiverged: " in r and "J_s is inf" in r for r in rows)
    assert "Missing runs" in (study / "again" / "report.html").read_text()
    status = harness("status", run_dir, cwd=study)
    assert status.returncode == 0 and "2 done, 0 running, 2 failed, 0 interrupted, 0 damaged, 0 pending of 4" \
        in status.stdout
    assert status.stdout.count("failed: Diverges seed") == 2 and "TrainingDiverged: " in status.stdout
    assert len(pd.read_csv(run_dir / "results.csv")) == 2


DAMAGES = {"binary": b"\x89PNG\r\n\x1a\n\x00\xff\xfe garbage", "text": b"this is not JSON\n", "foreign": b'{"foo": 1}'}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_study_json_gets_advice_true_of_study_json(study, tmp_path, damage):
    copy = Path(shutil.copytree(study / "runs" / "faults", tmp_path / "runs" / "faults"))
    (copy / "study.json").write_bytes(DAMAGES[damage])
    for args in (("status", copy), ("report", copy, "--out", tmp_path / "report"),
                 run_args(study, tmp_path / "runs", "--no-report")):
        out = harness(*args, cwd=study)
        assert out.returncode == 2, out.stderr[-3000:]
        error = out.stderr
        assert f"{copy / 'study.json'}: " + {"binary": "damaged, not UTF-8", "text": "damaged or not valid JSON",
                                             "foreign": "unknown key 'foo'"}[damage] in error
        assert "check its permissions" not in error and "a job's results are recomputed" not in error
        assert "Run the study again with this version" not in error and "Traceback" not in error
        # what deleting it loses, what stays, and the command that writes it again
        assert "deleting it loses only that record" in error and f"{copy / 'jobs'} stay" in error
        assert f"--profile tiny <its --set flags> --runs {tmp_path / 'runs'} --name faults" in error
    assert not (tmp_path / "report").exists()


def test_following_the_advice_for_a_damaged_study_json_loses_no_result(study, tmp_path):
    copy = Path(shutil.copytree(study / "runs" / "faults", tmp_path / "runs" / "faults"))
    (copy / "study.json").unlink()  # the advice: delete it, then the same command again
    again = harness(*run_args(study, tmp_path / "runs", "--no-report"), cwd=study)
    assert again.returncode == 1 and "4 jobs: 0 ran, 4 kept from before, 2 failed" in again.stdout
    assert harness("status", copy, cwd=study).returncode == 0
    pd.testing.assert_frame_equal(pd.read_csv(copy / "results.csv"),
                                  pd.read_csv(study / "runs" / "faults" / "results.csv"))


def _truncated_corpus(corpus: Path, into: Path) -> Path:
    """A copy of the corpus whose validation clip with the latest event lasts 1 s: that event starts after it."""
    copy = Path(shutil.copytree(corpus, into))
    labels = pd.read_csv(copy / "metadata" / "validation" / "validation.tsv", sep="\t").dropna()
    clip = labels.loc[labels["onset"].idxmax(), "filename"]
    audio, rate = sf.read(copy / "audio" / "validation" / clip)
    sf.write(copy / "audio" / "validation" / clip, audio[:rate], rate)
    return copy / "audio" / "validation" / clip


def test_data_check_refuses_what_run_refuses_and_a_refused_run_leaves_no_folder(tmp_path, tiny_corpus):
    clip = _truncated_corpus(tiny_corpus, tmp_path / "corpus")
    check = harness("data", "check", tmp_path / "corpus", cwd=tmp_path)
    assert check.returncode == 2 and f"{clip}: the audio lasts 1.00 s but" in check.stderr
    (tmp_path / "faults.toml").write_text(STUDY + f'\n[data]\nroot = "{tmp_path / "corpus"}"\n')
    run = harness("run", tmp_path / "faults.toml", "--profile", "tiny", "--runs", tmp_path / "runs", "--cache",
                  tmp_path / "cache", "--jobs", "1", cwd=tmp_path)
    assert run.returncode == 2 and f"{clip}: the audio lasts 1.00 s but" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "runs").exists()  # neither the run folder nor runs/ it created


def _read_only(path: Path) -> tuple[str, ...]:
    """A command prefix that runs the command with `path` read-only: a read-only bind mount in a mount namespace
    for root (whom permissions do not stop), else the folder's write bits removed (restored by the caller)."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(path)], check=True)
        return ()
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        pytest.skip("running as root without a mount namespace: no way to make a folder read-only")
    return ("unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(path))


def test_report_of_a_read_only_run_directory_writes_only_where_it_is_told(study, tmp_path):
    copy = Path(shutil.copytree(study / "runs" / "faults", tmp_path / "runs" / "faults"))
    (copy / "results.csv").unlink()  # stale or absent tables: rebuilt for the report, not into the run
    a1 = next(d for d in (copy / "jobs").iterdir() if '"variant": "A"' in (d / "job.json").read_text()
              and '"seed": 1' in (d / "job.json").read_text())
    for name in ("result.json", "started.json"):
        (a1 / name).unlink()  # never run: "not run yet"
    before = sorted(str(p.relative_to(copy)) for p in copy.rglob("*"))
    prefix = _read_only(copy)
    try:
        out = harness("report", copy, "--out", tmp_path / "out", cwd=tmp_path, prefix=prefix)
        assert out.returncode == 0, out.stderr[-3000:]
        other = harness("report", copy, "--reports", tmp_path / "reports", cwd=tmp_path, prefix=prefix)
        assert other.returncode == 0, other.stderr[-3000:]
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(copy)], check=True)
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*")) == before
    report = (tmp_path / "out" / "report.md").read_text()
    assert "3 of the 4 runs of the study's plan are missing" in report and "1 finished runs" in report
    assert "| A | 1 |" in report and "not run yet" in report and "| failed | TrainingDiverged: " in report
    assert (tmp_path / "reports" / "faults" / "report.md").read_text().split("Generated by")[0] == \
        report.split("Generated by")[0]


def test_a_forced_rerun_that_fails_is_failed_not_done_and_keeps_the_earlier_result(study, tmp_path):
    """--force runs a finished job again; when that attempt fails (here: a folder where its log goes), the job
    is failed, not done, and its earlier result is set aside rather than read as the result of now."""
    copy = Path(shutil.copytree(study / "runs" / "faults", tmp_path / "runs" / "faults"))
    done = sorted(p.parent for p in (copy / "jobs").glob("*/result.json"))
    assert len(done) == 2
    earlier = (done[0] / "result.json").read_bytes()
    (done[0] / "log.txt").unlink()
    (done[0] / "log.txt").mkdir()
    forced = harness(*run_args(study, tmp_path / "runs", "--no-report", "--force"), cwd=study)
    assert forced.returncode == 1, forced.stderr[-3000:]
    assert "3 jobs failed:" in forced.stderr and "log.txt: cannot write (Is a directory)" in forced.stderr
    assert not (done[0] / "result.json").exists()
    assert (done[0] / "result.replaced.json").read_bytes() == earlier
    status = harness("status", copy, cwd=study)
    assert "1 done, 0 running, 3 failed" in status.stdout
    assert len(pd.read_csv(copy / "results.csv")) == 1
