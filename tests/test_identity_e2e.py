"""Numbers you can trust, through the CLI on a DESED-format copy of the tiny corpus.

A result is reused only when nothing that can change it changed (data, teacher file, config); settings that
change no number (device, threads, backend, evaluator) rerun nothing; damaged caches are recomputed and
give the clean numbers; a moved cache works; a run directory holds one resolution; bad input is refused
before any work with a message naming what is wrong.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

STUDY = """
[study]
name = "ident"
seeds = [0]

[[variant]]
name = "EM+CS"
curriculum = "all"
pseudolabels = "strong+weak"
masking = "event"
augmentation = "custom"
"""
SCORES = ["job_id", "val_f1", "test_f1", "val_segment_f1", "test_segment_f1", "best_epoch", "steps"]


def harness(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, capture_output=True,
                         text=True, timeout=600)
    if check and out.returncode != 0:
        raise AssertionError(f"harness {' '.join(map(str, args))} exited {out.returncode}:\n{out.stderr[-3000:]}")
    return out


@pytest.fixture
def desed(tmp_path: Path, tiny_corpus: Path) -> Path:
    """A folder with a DESED-format copy of the tiny corpus (DESED/) and the study file (ident.toml)."""
    shutil.copytree(tiny_corpus, tmp_path / "DESED", ignore=shutil.ignore_patterns(".complete"))
    (tmp_path / "ident.toml").write_text(STUDY + f'\n[data]\nkind = "desed"\nroot = "{tmp_path / "DESED"}"\n')
    return tmp_path


def run(root: Path, *extra: str, check: bool = True, cache: str = "cache") -> subprocess.CompletedProcess:
    return harness("run", root / "ident.toml", "--profile", "tiny", "--runs", root / "runs", "--cache",
                   root / cache, "--no-report", "--backend", "inprocess", *extra, cwd=root, check=check)


def table(root: Path, name: str = "ident-tiny") -> pd.DataFrame:
    return pd.read_csv(root / "runs" / name / "results.csv")


def ran(out: subprocess.CompletedProcess) -> bool:
    """True when the run trained its job; False when it kept the finished one."""
    if "1 of 1 already finished" in out.stdout:
        return False
    assert "running 1 on the" in out.stdout, out.stdout
    return True


def run_name(out: subprocess.CompletedProcess) -> str:
    line = next(line for line in out.stdout.splitlines() if line.startswith("results:"))
    return Path(line.split()[1]).parent.name


def test_changed_data_runs_the_affected_work_again(desed):
    assert ran(run(desed))
    first = table(desed)
    assert not ran(run(desed))
    # A clip added on disk and in its TSV (a download that finally worked).
    unlabeled = desed / "DESED" / "audio" / "train" / "unlabel_in_domain"
    clip = sorted(unlabeled.iterdir())[0]
    shutil.copy(clip, unlabeled / "Yadded_0.000_10.000.wav")
    tsv = desed / "DESED" / "metadata" / "train" / "unlabel_in_domain.tsv"
    tsv.write_text(tsv.read_text() + "Yadded_0.000_10.000.wav\n")
    out = run(desed)
    assert ran(out) and "unlabeled 20 bins: computing" in out.stderr
    second = table(desed)
    assert second["job_id"].item() != first["job_id"].item()
    assert second["data_digest"].item() != first["data_digest"].item()
    # A fixed TSV row: one validation event's offset corrected.
    val = desed / "DESED" / "metadata" / "validation" / "validation.tsv"
    rows = val.read_text().splitlines()
    i = next(k for k, line in enumerate(rows[1:], 1) if line.split("\t")[3])
    name, onset, offset, label = rows[i].split("\t")
    rows[i] = "\t".join([name, onset, f"{float(offset) - 0.05:.3f}", label])
    val.write_text("\n".join(rows) + "\n")
    assert ran(run(desed))
    assert not ran(run(desed))


def _teacher_file(root: Path, path: Path, seed: int) -> None:
    from harness.config import DataConfig
    from harness.data.desed import load_dataset
    from harness.teacher.predictions import save_predictions

    subsets = load_dataset(DataConfig(root=str(root / "DESED")), root / "DESED")
    ids = [c for n in ("unlabeled", "validation", "test") for c in subsets[n].clip_ids]
    rng = np.random.default_rng(seed)
    save_predictions(path, ids, rng.random((len(ids), 10)), rng.random((len(ids), 10, 500)))


def test_a_teacher_file_rewritten_at_the_same_path_is_a_new_teacher(desed):
    path = desed / "teacher.npz"
    _teacher_file(desed, path, 0)
    flags = ("--set", "teacher.source=file", "--set", f"teacher.predictions={path}")
    out = run(desed, *flags)
    assert ran(out)
    first = table(desed, run_name(out))
    forced = run(desed, *flags, "--force")
    assert "cache hit" in forced.stderr  # same file: the same bundle
    _teacher_file(desed, path, 1)  # new content, same path
    out = run(desed, *flags)
    assert ran(out) and "shared stages: cache hit" not in out.stderr
    second = table(desed, run_name(out))
    assert second["bundle_key"].item() != first["bundle_key"].item()


def test_settings_that_change_no_number_rerun_nothing(desed):
    assert ran(run(desed))
    before = table(desed)
    for flags in (("--set", "train.device=cpu"), ("--threads", "2"), ("--backend", "local", "--jobs", "1"),
                  ("--set", "eval.evaluator=sed_eval"), ("--set", "train.checkpoint=false")):
        assert not ran(run(desed, *flags)), flags
    after = table(desed)
    pd.testing.assert_frame_equal(after, before)
    assert after["threads"].item() == 1 and after["device"].item() == "cpu"
    assert after["torch_version"].item().startswith("2.") and after["bundle_key"].item()


def _zero_block(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = 256
    data[start:start + 40_000] = bytes(min(40_000, len(data) - start))
    path.write_bytes(bytes(data))


def test_damaged_caches_are_recomputed_and_give_the_clean_numbers(desed):
    run(desed)
    clean = table(desed)
    features = next((desed / "cache" / "features").glob("validation-20-*.npy"))
    _zero_block(features)
    out = run(desed, "--force")
    assert f"{features} is damaged" in out.stderr and "validation 20 bins: computing" in out.stderr
    pd.testing.assert_frame_equal(table(desed)[SCORES], clean[SCORES])
    array = next((desed / "cache" / "stages").glob("*/teacher_unlabeled_strong.npy"))
    _zero_block(array)
    out = run(desed, "--force")
    assert f"{array} is damaged" in out.stderr and "rebuilding" not in out.stderr.split("damaged")[0]
    assert "shared stages: rebuilding" in out.stderr  # the bundle was rebuilt, never used damaged
    pd.testing.assert_frame_equal(table(desed)[SCORES], clean[SCORES])


def test_a_moved_cache_works(desed):
    run(desed)
    clean = table(desed)
    (desed / "cache").rename(desed / "moved")
    out = run(desed, "--force", cache="moved")
    assert "shared stages: cache hit" in out.stderr and "computing" not in out.stderr
    pd.testing.assert_frame_equal(table(desed)[SCORES], clean[SCORES])


def test_a_run_directory_holds_one_resolution_and_status_reads_it(desed):
    name = run_name(run(desed, "--set", "train.steps=6"))
    assert name.startswith("ident-tiny-") and len(name) == len("ident-tiny-") + 6  # profile + overrides digest
    status = harness("status", desed / "runs" / name, cwd=desed).stdout
    assert "1 done" in status and "--set train.steps=6" in status
    elsewhere = harness("status", desed / "ident.toml", "--profile", "tiny", "--runs", desed / "runs", "--cache",
                        desed / "cache", cwd=desed).stdout
    assert "not run yet" in elsewhere and name in elsewhere
    refused = run(desed, "--name", name, "--set", "train.steps=7", check=False)
    assert refused.returncode == 2 and "holds another resolution" in refused.stderr
    assert "--name" in refused.stderr and "Traceback" not in refused.stderr
    result = next((desed / "runs" / name / "jobs").glob("*/result.json"))
    result.write_text(result.read_text()[:50])  # a truncated result is not a finished job
    assert "1 damaged" in harness("status", desed / "runs" / name, cwd=desed).stdout
    assert ran(run(desed, "--set", "train.steps=6"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_comparison(root: Path) -> tuple[str, ...]:
    (root / "ident.toml").write_text((root / "ident.toml").read_text() + '\n[[comparison]]\na = "EM+CS"\nb = "EM+CS"\n')
    return ()


def _escaping_name(root: Path) -> tuple[str, ...]:
    (root / "ident.toml").write_text((root / "ident.toml").read_text().replace('name = "ident"', 'name = "../../x"'))
    return ()


def _bad_teacher_file(root: Path) -> tuple[str, ...]:
    np.savez(root / "bad.npz", clip_ids=np.array(["a.wav"]), weak=np.zeros((1, 10)), strong=np.zeros((1, 10, 7)))
    return ("--set", "teacher.source=file", "--set", f"teacher.predictions={root / 'bad.npz'}")


def _labelled_clip(root: Path, min_onset: float = 0.0) -> Path:
    val = root / "DESED" / "metadata" / "validation" / "validation.tsv"
    rows = [line.split("\t") for line in val.read_text().splitlines()[1:]]
    clip = next(r[0] for r in rows if r[3] and float(r[1]) >= min_onset)
    return root / "DESED" / "audio" / "validation" / clip


def _short_audio(root: Path) -> tuple[str, ...]:
    import soundfile

    soundfile.write(_labelled_clip(root, 0.5), np.zeros(4000, np.float32), 16000)  # 0.25 s of audio
    return ()


def _unreadable_audio(root: Path) -> tuple[str, ...]:
    _labelled_clip(root).write_bytes(b"RIFF" + bytes(96))  # 100 bytes
    return ()


def _no_such_data(root: Path) -> tuple[str, ...]:
    (root / "ident.toml").write_text(STUDY)  # the synthetic corpus of the tiny profile
    return ("--data", str(root / "nowhere" / "x"))


BAD_INPUTS = {
    "steps": (lambda r: ("--set", "train.steps=0"), "train.steps = 0; it must be at least 1"),
    "lr": (lambda r: ("--set", "train.lr=0"), "train.lr = 0.0; it must be greater than 0"),
    "nan": (lambda r: ("--set", "loss.lambda1=nan"), "loss.lambda1: nan is not a finite number"),
    "self-comparison": (_self_comparison, "compares variant 'EM+CS' with itself"),
    "escaping name": (_escaping_name, "[study] name '../../x' must be"),
    "missing data": (_no_such_data, "does not exist; the tiny profile generates its corpus"),
    "dask": (lambda r: ("--backend", "dask", "--scheduler", f"tcp://127.0.0.1:{free_port()}"),
             "cannot reach the Dask scheduler"),
    "teacher without file": (lambda r: ("--set", "teacher.source=file"), 'needs teacher.predictions = PATH'),
    "malformed teacher file": (_bad_teacher_file, "strong has shape (1, 10, 7), expected (1, 10, 500)"),
    "short audio": (_short_audio, "the audio lasts 0.25 s but"),
    "unreadable audio": (_unreadable_audio, "cannot read audio file"),
    "geometry": (lambda r: ("--set", "features.hop_seconds=0.01"), "set features.n_frames = 1000 for this hop"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_before_any_work(desed, case):
    make, message = BAD_INPUTS[case]
    out = run(desed, *make(desed), check=False)
    assert out.returncode == 2, out.stderr[-2000:]
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not list((desed / "cache").glob("features/*.npy"))  # refused before any feature was computed
    assert not (desed / "nowhere").exists()


def test_an_unwritable_runs_folder_is_a_clear_error(desed):
    (desed / "runs").write_text("not a folder")
    out = run(desed, check=False)
    assert out.returncode == 2 and "runs" in out.stderr and "Traceback" not in out.stderr


def test_data_check_names_its_own_flag_for_missing_files(desed):
    next((desed / "DESED" / "audio" / "validation").iterdir()).unlink()
    out = harness("data", "check", desed / "DESED", cwd=desed, check=False)
    assert out.returncode == 2 and "`harness data check`: --skip-missing" in out.stderr
    assert harness("data", "check", desed / "DESED", "--skip-missing", cwd=desed).returncode == 0


def test_a_non_default_hop_scores_events_at_the_right_seconds(desed):
    name = run_name(run(desed, "--set", "features.hop_seconds=0.01", "--set", "features.n_frames=1000"))
    job = next((desed / "runs" / name / "jobs").iterdir())
    with np.load(job / "probabilities_validation.npz") as npz:
        assert npz["frame"].shape[2] == 1000  # 10-ms frames over 10 s
    predictions = pd.read_csv(job / "predictions_validation.tsv", sep="\t")
    if len(predictions):
        assert predictions["offset"].max() <= 10.0 + 1e-9
    reference = pd.read_csv(next((desed / "cache" / "stages").glob("*/validation_reference.tsv")), sep="\t")
    assert reference["offset"].max() <= 10.0


def test_one_frame_geometry_from_labels_to_events():
    """Labels encoded and events decoded at a 10-ms hop land at the labelled seconds."""
    from harness.config import PostprocessConfig
    from harness.data.desed import Event
    from harness.data.encoder import LabelEncoder
    from harness.evaluation.postprocess import postprocess

    encoder = LabelEncoder(n_frames=1000, hop_seconds=0.01)
    strong = encoder.encode_strong((Event(2.5, 3.0, "Dog"), Event(7.25, 9.5, "Speech")))
    assert strong.shape == (10, 1000) and strong[4, 250:300].all() and not strong[4, 300]
    events = postprocess(strong[None].astype(np.float32), strong.max(axis=1)[None], ["a.wav"], np.ones(10),
                         PostprocessConfig(), hop_seconds=0.01)
    got = sorted(zip(events["event_label"], events["onset"], events["offset"]))
    assert got == [("Dog", pytest.approx(2.5), pytest.approx(3.0)), ("Speech", pytest.approx(7.25),
                                                                      pytest.approx(9.5))]
