"""Pseudolabel quality (issue 28 item 1): the synthetic corpus writes the truth of its unlabeled clips, the study
scores the teacher's pseudolabels against it as the students are given them, and the report shows it; data
without truth shows nothing, and the truth changes no key."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from conftest import warm_cache
from harness.bundle import Bundle
from harness.config import DataConfig, LossConfig, MethodConfig
from harness.constants import CLASSES
from harness.data.desed import UNLABELED_TRUTH_TSV, load_dataset, read_strong_tsv, unlabeled_truth
from harness.data.synth import SIZES, ClipSpec, render_clip
from harness.errors import DataError
from harness.evaluation.metrics import event_based, segment_based
from harness.study.pseudolabels import pseudolabel_quality
from harness.study.stages import read_data

# The tiny corpus's data key (seed 0), computed with the code before the truth file existed: writing the truth
# must leave every subset's TSV and audio, hence the data key and every job id, as they were.
TINY_DATA_KEY = "9ef188f0b534fd39"
HOP, CLIP = 0.02, 10.0
STUDY = """[study]
name = "pl"
seeds = [0]

[data]
root = "{root}"
kind = "{kind}"

[[variant]]
name = "EM"

[[variant]]
name = "SM"
masking = "segment"

[[variant]]
name = "none"
pseudolabels = "none"
"""


def harness(*args, cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, f"harness {' '.join(map(str, args))}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


def run(root: Path, corpus: Path, *flags: str, kind: str = "synthetic") -> tuple[Path, Path]:
    """Run the study on `corpus` with its report; returns the run's folder (the only one) and the report's."""
    (root / "pl.toml").write_text(STUDY.format(root=corpus, kind=kind))
    harness("run", root / "pl.toml", "--profile", "tiny", "--runs", root / "runs", "--cache", root / "cache",
            "--reports", root / "reports", "--backend", "inprocess", "--jobs", "1", "--set", "train.steps=1",
            *flags, cwd=root)
    [run_dir] = (root / "runs").iterdir()
    return run_dir, root / "reports" / run_dir.name


# --------------------------------------------------------------------------- the truth


def test_the_truth_tsv_holds_the_events_the_generator_rendered(tiny_corpus, tmp_path):
    truth = tiny_corpus / UNLABELED_TRUTH_TSV
    assert unlabeled_truth(DataConfig(root=str(tiny_corpus))) == truth
    listed = read_strong_tsv(truth, CLASSES)
    unlabeled = load_dataset(DataConfig(root=str(tiny_corpus)))["unlabeled"]
    assert tuple(listed) == unlabeled.clip_ids  # every unlabeled clip, in the unlabeled TSV's order
    for i in range(SIZES["tiny"]["unlabeled"]):  # the clips rendered again, audio and all
        name, events = render_clip(ClipSpec("unlabeled", i, 0, 16000), tmp_path)
        assert [(e.onset, e.offset, e.label) for e in listed[name]] == [(on, off, lab) for on, off, lab in events]
    assert sum(not events for events in listed.values()) == 2  # index % 8 == 3: clips without events


def test_the_truth_changes_no_data_key_and_is_written_into_an_older_corpus(tiny_corpus, tmp_path):
    copy = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    with_truth = read_data(DataConfig(root=str(copy)), tmp_path / "cache", jobs=1).key
    (copy / UNLABELED_TRUTH_TSV).unlink()  # a corpus generated before the truth was written
    without = read_data(DataConfig(root=str(copy)), tmp_path / "cache", jobs=1).key
    assert with_truth == without == TINY_DATA_KEY
    assert unlabeled_truth(DataConfig(root=str(copy))) is None
    # As a synthetic corpus it is finished: the truth is added, byte for byte what a generation writes.
    read_data(DataConfig(kind="synthetic", synth_size="tiny", root=str(copy)), tmp_path / "cache", jobs=1)
    assert (copy / UNLABELED_TRUTH_TSV).read_bytes() == (tiny_corpus / UNLABELED_TRUTH_TSV).read_bytes()


def test_a_truth_file_named_but_missing_is_an_error(tiny_corpus):
    with pytest.raises(DataError, match="data.unlabeled_truth_tsv"):
        unlabeled_truth(DataConfig(root=str(tiny_corpus), unlabeled_truth_tsv="nowhere.tsv"))


# --------------------------------------------------------------------------- the numbers, independently


def _truth_frame(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, sep="\t", keep_default_na=True)
    return frame.dropna(subset=["event_label"]).astype({"onset": float, "offset": float})


def _runs(active: np.ndarray, ids: list[str], classes: list[str]) -> pd.DataFrame:
    """Contiguous active frames -> events, by a plain loop (10-s clips, 500 frames of 20 ms)."""
    rows = []
    for n, clip in enumerate(ids):
        for c, label in enumerate(classes):
            t = 0
            while t < active.shape[2]:
                if active[n, c, t]:
                    start = t
                    while t < active.shape[2] and active[n, c, t]:
                        t += 1
                    rows.append((clip, start * HOP, min(t * HOP, CLIP), label))
                t += 1
    return pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"])


def _whole_clips(present: np.ndarray, ids: list[str], classes: list[str]) -> pd.DataFrame:
    rows = [(ids[n], 0.0, CLIP, classes[c]) for n, c in zip(*np.nonzero(present))]
    return pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"])


def expected(bundle: Bundle, truth: Path, gated: bool) -> dict:
    """The quality computed here: events from the arrays by hand, F1 by harness.evaluation (tested against
    sed_eval), clip F1 as the event F1 of whole-clip events, AUC by scipy's Mann-Whitney U."""
    ids, classes = list(bundle.clip_ids("unlabeled")), list(bundle.classes)
    strong = np.asarray(bundle.array("teacher_unlabeled_strong"))
    weak = np.asarray(bundle.array("teacher_unlabeled_weak"))
    reference = _truth_frame(truth)
    active = strong >= 0.5
    if gated:
        active = active & (weak >= 0.5)[:, :, None]
    events = _runs(active, ids, classes)
    present = np.zeros_like(weak, dtype=bool)
    for _, row in reference.iterrows():
        present[ids.index(row["filename"]), classes.index(row["event_label"])] = True
    aucs = [mannwhitneyu(weak[present[:, c], c], weak[~present[:, c], c]).statistic
            / (present[:, c].sum() * (~present[:, c]).sum())
            for c in range(len(classes)) if 0 < present[:, c].sum() < len(ids)]
    clip_f1 = event_based(_whole_clips(present, ids, classes), _whole_clips(weak >= 0.5, ids, classes), ids,
                          classes=classes).macro_f1
    return {"strong_event_f1": 100 * event_based(reference, events, ids, classes=classes).macro_f1,
            "strong_segment_f1": 100 * segment_based(reference, events, ids, classes=classes).macro_f1,
            "weak_clip_f1": 100 * clip_f1, "weak_auc": float(np.mean(aucs)), "n_clips": len(ids)}


def _close(row: dict, want: dict, tolerance: float) -> None:
    for key, value in want.items():
        if isinstance(value, float) and np.isnan(value):
            assert row[key] is None, key
        else:
            assert row[key] == pytest.approx(value, abs=tolerance), key


def test_a_study_scores_the_pseudolabels_and_its_report_shows_them(tmp_path, tiny_corpus, tiny_stages):
    warm_cache(tiny_stages, tmp_path)
    run_dir, report = run(tmp_path, tiny_corpus)
    study = json.loads((run_dir / "study.json").read_text())
    rows = study["pseudolabel_rows"]
    # One row per target setting of the distilling variants: event masking gates, segment masking does not.
    assert [(r["name"], r["gated"], r["presence_threshold"]) for r in rows] == [
        ("Teacher (ours)", True, 0.5), ("Teacher (ours)", False, 0.5)]
    results = pd.read_csv(run_dir / "results.csv")
    root = tmp_path / "cache" / "stages" / results["bundle_key"].iloc[0]
    bundle, truth = Bundle.open(root), tiny_corpus / UNLABELED_TRUTH_TSV
    reference = study["reference_rows"][0]
    for row, setting in zip(rows, (LossConfig(), LossConfig(masking="segment"))):
        want = expected(bundle, truth, gated=setting.masking == "event")
        _close(row, want, 1e-4)  # study.json holds them to 4 decimals
        durations = dict.fromkeys(bundle.clip_ids("unlabeled"), CLIP)
        exact = pseudolabel_quality(root, MethodConfig(loss=setting), truth, durations)  # cached by the study
        _close(exact, want, 1e-9)
        assert (row["val_f1"], row["test_f1"]) == (reference["val_f1"], reference["test_f1"])
        assert row["truth"] == UNLABELED_TRUTH_TSV and row["n_clips"] == SIZES["tiny"]["unlabeled"]
    text = (report / "report.md").read_text()
    assert "## Teacher pseudolabels on the unlabeled clips" in text and "How to read it." in text
    assert "| Teacher (ours) | frames >= 0.5 in clips >= 0.5 |" in text and "| Teacher (ours) | frames >= 0.5 |" in text
    table = pd.read_csv(report / "tables" / "pseudolabels.csv")
    assert table["strong_event_f1"].tolist() == pytest.approx([r["strong_event_f1"] for r in rows], abs=1e-4)
    assert table["n_clips"].tolist() == [16, 16]


def test_data_without_truth_shows_nothing_and_a_named_truth_keeps_the_run(tmp_path, tiny_corpus, tiny_stages):
    warm_cache(tiny_stages, tmp_path)
    corpus = Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
    moved = corpus / "elsewhere.tsv"
    (corpus / UNLABELED_TRUTH_TSV).rename(moved)
    run_dir, report = run(tmp_path, corpus, kind="desed")  # as DESED: a synthetic corpus would get its truth back
    study_path = run_dir / "study.json"
    assert json.loads(study_path.read_text())["pseudolabel_rows"] == []
    assert "pseudolabels on the unlabeled" not in (report / "report.md").read_text()
    assert not (report / "tables" / "pseudolabels.csv").exists()
    jobs = pd.read_csv(run_dir / "results.csv")["job_id"].tolist()
    # Named by data.unlabeled_truth_tsv: the same run (its name has no digest of it), no job run again.
    assert run(tmp_path, corpus, "--set", "data.unlabeled_truth_tsv=elsewhere.tsv", kind="desed") == (run_dir, report)
    assert pd.read_csv(run_dir / "results.csv")["job_id"].tolist() == jobs
    rows = json.loads(study_path.read_text())["pseudolabel_rows"]
    assert [r["truth"] for r in rows] == ["elsewhere.tsv", "elsewhere.tsv"]
    assert "## Teacher pseudolabels on the unlabeled clips" in (report / "report.md").read_text()
