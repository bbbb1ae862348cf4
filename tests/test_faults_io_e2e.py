"""Real I/O failures through the CLI (issue 27, items 3 and 7 to 10): a full disk named as full, no file's
content echoed in an error, no write through a symbolic link in a run folder, every file's mode from the umask,
and a closed stdout ending quietly."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from conftest import warm_cache

MARKER = "TOPSECRET-7f3a-do-not-print"


def _study(root: Path, data: str, base: str = "") -> Path:
    path = root / "s.toml"
    path.write_text(f'[study]\nname = "io"\nseeds = 1\n\n{base}\n[[variant]]\nname = "A"\n\n[data]\n{data}\n')
    return path


def _corpus(corpus: Path) -> str:
    return f'root = "{corpus}"\n'


SYNTHETIC = 'kind = "synthetic"\nsynth_size = "tiny"\n'  # generated into the cache on first use


def _run(root: Path, *extra: str, runs: Path | None = None, cache: Path | None = None, umask: int | None = None,
         name: str = "io") -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "harness", "run", str(root / "s.toml"), "--profile", "tiny", "--runs",
            str(runs or root / "runs"), "--cache", str(cache or root / "cache"), "--name", name, "--jobs", "1",
            "--set", "train.steps=1", *extra]
    return subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=600,
                          preexec_fn=None if umask is None else (lambda: os.umask(umask)))


@contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at `path`: a real disk that fills up. Needs root (CI and the dev container run as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # a process still inside: detach


# --------------------------------------------------------------------------- item 3: a full disk


def test_a_full_cache_disk_names_the_file_and_says_the_disk_is_full(tmp_path):
    _study(tmp_path, SYNTHETIC)
    with _tmpfs(tmp_path / "small", "2m") as small:  # the tiny corpus alone is ~16 MB
        out = _run(tmp_path, "--no-report", cache=small / "cache")
    assert out.returncode == 2, out.stderr[-2000:]
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith(f"harness: error: {small}/cache/"), error
    assert "the disk is full" in error and "free space" in error
    assert "Traceback" not in out.stderr and "LibsndfileError" not in out.stderr and "System error" not in out.stderr


def test_a_job_on_a_full_runs_disk_names_its_file_in_error_json_and_on_the_terminal(tmp_path, tiny_corpus,
                                                                                    tiny_stages):
    _study(tmp_path, _corpus(tiny_corpus))
    warm_cache(tiny_stages, tmp_path)
    # 200 KB: the run's records, the job's log, metrics and checkpoint fit; its probabilities (~115 KB each) do
    # not. The failed write's temporary file is removed, so error.json fits again.
    with _tmpfs(tmp_path / "small", "200k") as small:
        out = _run(tmp_path, "--no-report", runs=small / "runs")
        (job,) = (small / "runs" / "io" / "jobs").iterdir()
        failure = json.loads((job / "error.json").read_text())
        leftovers = [p.name for p in job.iterdir() if ".tmp" in p.name]
    assert out.returncode in (1, 2), out.stderr[-2000:]
    assert failure["error"] == "DiskFull"
    assert failure["message"].startswith(f"{job}/") and "the disk is full" in failure["message"]
    assert f"{job}/" in out.stdout + out.stderr and "the disk is full" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "Logging error" not in out.stderr
    assert leftovers == []


def test_a_report_on_a_full_disk_names_its_folder_and_says_the_disk_is_full(tmp_path, finished_run):
    with _tmpfs(tmp_path / "small", "64k") as small:  # the report's figures alone are larger
        out = subprocess.run([sys.executable, "-m", "harness", "report", str(finished_run), "--out",
                              str(small / "report")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"harness: error: {small}/report" in out.stderr and "the disk is full" in out.stderr
    assert "Traceback" not in out.stderr


# --------------------------------------------------------------------------- item 7: no content echoed


@pytest.mark.parametrize("key", ["synthetic_tsv", "weak_tsv", "validation_tsv"])
def test_a_metadata_tsv_that_is_another_file_is_named_never_echoed(tmp_path, tiny_corpus, key):
    secret = tmp_path / "secret.txt"
    secret.write_text(f"{MARKER}:x:0:0\nsecond line\n")
    _study(tmp_path, _corpus(tiny_corpus) + f'{key} = "{secret}"\n')
    out = _run(tmp_path, "--no-report")
    assert out.returncode == 2
    assert MARKER not in out.stderr + out.stdout
    assert str(secret) in out.stderr and "tab-separated columns filename" in out.stderr


def test_a_directory_given_as_a_file_is_called_a_directory(tmp_path, tiny_corpus):
    folder = tmp_path / "folder"
    folder.mkdir()
    _study(tmp_path, _corpus(tiny_corpus) + f'synthetic_tsv = "{folder}"\n')
    out = _run(tmp_path, "--no-report")
    assert out.returncode == 2 and f"{folder} is a directory, not a file" in out.stderr, out.stderr[-2000:]
    _study(tmp_path, _corpus(tiny_corpus), base=f'[base]\nteacher.source = "file"\nteacher.predictions = "{folder}"\n')
    out = _run(tmp_path, "--no-report")
    assert out.returncode == 2 and f"{folder} is a directory, not a file" in out.stderr, out.stderr[-2000:]
    out = subprocess.run([sys.executable, "-m", "harness", "run", str(folder), "--profile", "tiny"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and f"{folder} is a directory, not a file" in out.stderr, out.stderr[-2000:]


def test_a_text_file_given_as_teacher_predictions_is_named_with_the_format_expected(tmp_path, tiny_corpus):
    secret = tmp_path / "secret.txt"
    secret.write_text(f"{MARKER}\n")
    _study(tmp_path, _corpus(tiny_corpus), base=f'[base]\nteacher.source = "file"\nteacher.predictions = "{secret}"\n')
    out = _run(tmp_path, "--no-report")
    assert out.returncode == 2
    assert MARKER not in out.stderr + out.stdout
    assert "allow_pickle" not in out.stderr and "pickled" not in out.stderr
    assert f"teacher predictions {secret} is not a .npz archive" in out.stderr and "np.savez" in out.stderr


def test_binary_files_given_as_text_are_named_without_their_bytes(tmp_path, tiny_corpus):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\xff\xfe" + MARKER.encode() + b"\x00\x80")
    _study(tmp_path, _corpus(tiny_corpus) + f'weak_tsv = "{blob}"\n')
    out = _run(tmp_path, "--no-report")
    assert out.returncode == 2 and f"{blob}: not UTF-8 text" in out.stderr, out.stderr[-2000:]
    assert MARKER not in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "harness", "run", str(blob), "--profile", "tiny"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and f"{blob}: not UTF-8 text" in out.stderr and MARKER not in out.stderr


# --------------------------------------------------------------------------- item 8: symbolic links


def test_a_run_folder_s_links_are_never_written_through(tmp_path, finished_run):
    _copy_of(finished_run, tmp_path)  # the study run once, as `_run(tmp_path, "--no-report")` leaves it
    (job,) = (tmp_path / "runs" / "io" / "jobs").iterdir()
    outside, folder = tmp_path / "outside.txt", tmp_path / "outside"
    outside.write_text("precious\n")
    folder.mkdir()
    (job / "log.txt").unlink()
    (job / "log.txt").symlink_to(outside)
    first = _run(tmp_path, "--no-report", "--force")
    assert outside.read_text() == "precious\n"
    assert first.returncode == 1, first.stderr[-2000:]
    message = json.loads((job / "error.json").read_text())["message"]
    assert message.startswith(f"{job / 'log.txt'}: is a symbolic link") and "delete the link" in message
    assert "Traceback" not in first.stderr

    (job / "log.txt").unlink()  # the link removed: every other linked file is replaced, not written through
    links = ["started.json", "best.pt", "metrics.csv", "predictions_test.tsv", "probabilities_test.npz",
             "result.json"]
    for name in links + ["checkpoint.pt"]:  # a checkpoint read through a link is damaged: training restarts
        (job / name).unlink(missing_ok=True)
        (job / name).symlink_to(outside)
    curves = job / "tensorboard"
    if curves.exists():
        shutil.rmtree(curves)
    curves.symlink_to(folder, target_is_directory=True)
    second = _run(tmp_path, "--no-report", "--force")
    assert second.returncode == 0, second.stderr[-2000:]
    assert outside.read_text() == "precious\n" and list(folder.iterdir()) == []
    for name in links + ["log.txt"]:
        assert not (job / name).is_symlink() and (job / name).is_file(), name
    assert not curves.is_symlink() and not (job / "checkpoint.pt").is_symlink()


def test_a_linked_study_lock_is_refused_not_truncated(tmp_path, finished_run):
    _copy_of(finished_run, tmp_path)  # the study run once, as `_run(tmp_path, "--no-report")` leaves it
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    lock = tmp_path / "runs" / "io" / ".lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(outside)
    out = _run(tmp_path, "--no-report")
    assert out.returncode == 2 and f"{lock}: is a symbolic link" in out.stderr, out.stderr[-2000:]
    assert outside.read_text() == "precious\n"


# --------------------------------------------------------------------------- item 9: modes from the umask


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_file_written_follows_the_umask(tmp_path, umask):
    _study(tmp_path, SYNTHETIC)
    out = _run(tmp_path, umask=umask)  # the corpus, the stages, a job, the tables and the report
    assert out.returncode == 0, out.stderr[-2000:]
    job = next((tmp_path / "runs" / "io" / "jobs").iterdir())
    assert (job / "predictions_test.tsv").is_file() and (job / "probabilities_test.npz").is_file()
    written = [p for root in ("runs", "cache", "reports") for p in (tmp_path / root).rglob("*")]
    assert len(written) > 50
    wrong = {str(p): oct(stat.S_IMODE(p.lstat().st_mode)) for p in written
             if stat.S_IMODE(p.lstat().st_mode) != (0o777 if p.is_dir() else 0o666) & ~umask}
    assert wrong == {}


# --------------------------------------------------------------------------- item 10: a closed stdout


@pytest.fixture(scope="module")
def finished_run(tiny_corpus, tiny_stages, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("status")
    _study(root, _corpus(tiny_corpus))
    warm_cache(tiny_stages, root)
    assert _run(root, "--no-report").returncode == 0
    return root / "runs" / "io"


def _copy_of(finished_run: Path, root: Path) -> None:
    """root/s.toml, root/cache and root/runs/io: a copy of `finished_run`'s folder, for a test that changes it."""
    shutil.copy(finished_run.parents[1] / "s.toml", root / "s.toml")
    shutil.copytree(finished_run.parents[1] / "cache", root / "cache")
    shutil.copytree(finished_run, root / "runs" / "io")


def _status(run_dir: Path, stdout) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "status", str(run_dir)], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=120)


def test_status_into_a_closed_pipe_ends_quietly(finished_run):
    for _ in range(3):  # the reader gone before anything is written: every write fails
        read, write = os.pipe()
        os.close(read)
        try:
            out = _status(finished_run, write)
        finally:
            os.close(write)
        assert (out.returncode, out.stderr) == (0, "")


def test_status_piped_to_head_ends_quietly(finished_run):
    for _ in range(5):  # `status RUN | head -1`: the reader reads a line and leaves
        proc = subprocess.Popen([sys.executable, "-m", "harness", "status", str(finished_run)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().startswith("study io")
        proc.stdout.close()
        stderr = proc.stderr.read()
        assert (proc.wait(timeout=120), stderr) == (0, "")
