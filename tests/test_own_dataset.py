"""A dataset of its own in DESED's layout, through the CLI: six urban classes, 8-s clips at 22.05 kHz (some
validation and test clips shorter), with and without unlabeled and weak clips (issue 22, items 1 and 2)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from harness.data.desed import LAYOUT

SR = 22050
SECONDS = 8.0
SHORT = 6.5  # every third validation and test clip
URBAN = ("car_horn", "dog_bark", "siren", "street_music", "drilling", "jackhammer")
CLIPS = {"synthetic": 12, "weak": 8, "unlabeled": 8, "validation": 6, "test": 6}
HEADERS = {"strong": "filename\tonset\toffset\tevent_label", "weak": "filename\tevent_labels",
           "unlabeled": "filename"}


def _events(rng: np.random.Generator, i: int, seconds: float) -> list[tuple[float, float, str]]:
    """One or two events a clip, every class in turn; lengths 0.4-2 s."""
    out = []
    for k in range(1 + i % 2):
        onset = round(float(rng.uniform(0, seconds - 2.5)), 3)
        out.append((onset, round(onset + float(rng.uniform(0.4, 2.0)), 3), URBAN[(i + 2 * k) % len(URBAN)]))
    return out


def _write_clip(rng: np.random.Generator, path: Path, seconds: float, events) -> None:
    """Background noise plus a tone burst per event, at a pitch of its class."""
    audio = 0.01 * rng.standard_normal(int(seconds * SR))
    for onset, offset, label in events:
        a, b = int(onset * SR), int(offset * SR)
        pitch = 300.0 * (1 + URBAN.index(label))
        audio[a:b] += 0.3 * np.sin(2 * np.pi * pitch * np.arange(b - a) / SR) * (1 + 0.2 * rng.standard_normal(b - a))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio.astype(np.float32), SR, subtype="PCM_16")


def generate(root: Path, subsets=tuple(CLIPS)) -> Path:
    """A DESED-layout root of the given subsets (the others absent)."""
    rng = np.random.default_rng(0)
    for subset in subsets:
        tsv, audio = root / LAYOUT[subset][1], root / LAYOUT[subset][2]
        kind = LAYOUT[subset][0]
        rows = [HEADERS[kind]]
        for i in range(CLIPS[subset]):
            name = f"{subset}_{i:03d}.wav"
            seconds = SHORT if subset in ("validation", "test") and i % 3 == 0 else SECONDS
            events = _events(rng, i, seconds)
            _write_clip(rng, audio / name, seconds, events)
            if kind == "weak":
                rows.append(f"{name}\t{','.join(sorted({label for _, _, label in events}))}")
            elif kind == "unlabeled":
                rows.append(name)
            else:
                rows += [f"{name}\t{onset}\t{offset}\t{label}" for onset, offset, label in events]
        tsv.parent.mkdir(parents=True, exist_ok=True)
        tsv.write_text("\n".join(rows) + "\n")
    return root


# The tiny profile's small settings (harness.study.plan.BUILTIN_PROFILES["tiny"]); 400 frames of 20 ms = 8 s.
STUDY = """
[study]
name = "{name}"
seeds = {seeds}

[base.features]
n_frames = 400

{variants}

[data]
kind = "desed"
root = "{root}"
"""
TWO_VARIANTS = """
[[variant]]
name = "SW"
pseudolabels = "strong+weak"

[[variant]]
name = "none"
pseudolabels = "none"

[[comparison]]
a = "SW"
b = "none"
"""
# The main study: a grid of two keys the paper never varies, with comparisons generated from it.
GRID = """
[grid]
"student.hidden" = [8, 16]
"train.lr" = [0.001, 0.003]

[factor."student.hidden"]
label = "Hidden units"

[[comparisons]]
factor = "student.hidden"
against = 16
"""
NONE_ONLY = """
[[variant]]
name = "none"
pseudolabels = "none"
"""


def harness(*args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, capture_output=True,
                         text=True, timeout=900)
    if check:
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def _study(path: Path, name: str, root: Path, variants: str = TWO_VARIANTS, seeds: int = 2) -> Path:
    path.write_text(STUDY.format(name=name, seeds=seeds, variants=variants, root=root))
    return path


@pytest.fixture(scope="module")
def urban(tmp_path_factory):
    """The full dataset, its study run with a report, then status and a rescore."""
    base = tmp_path_factory.mktemp("urban")
    root = generate(base / "urban")
    study = _study(base / "urban.toml", "urban", root, GRID)
    common = ("--profile", "tiny", "--runs", base / "runs", "--cache", base / "cache")
    check = harness("data", "check", root, cwd=base)
    harness("run", study, *common, "--jobs", "2", "--reports", base / "reports", cwd=base)
    run_dir = base / "runs" / "urban-tiny"
    status = harness("status", run_dir, cwd=base)
    harness("rescore", run_dir, "--set", "postprocess.threshold=0.4", "--name", "t04", "--cache", base / "cache",
            "--jobs", "2", cwd=base)
    return base, root, study, common, check, status


def test_data_check_prints_the_classes_the_clip_lengths_and_the_frames_needed(urban):
    check = urban[4].stdout
    assert "classes     6: car_horn, dog_bark, drilling, jackhammer, siren, street_music" in check
    assert "clip length 6.50 to 8.00 s" in check
    assert "frames      400 of 0.02 s cover the longest strong clip (8.00 s)" in check
    assert re.search(r"validation\s+6 clips \(strong, \d+ events; 2 shorter than 8 s\)", check)


def test_a_study_on_the_dataset_runs_and_reports_its_own_classes(urban):
    base, _, _, _, _, status = urban
    from harness.report.build import _per_class_matrix

    run_dir = base / "runs" / "urban-tiny"
    assert "8 done, 0 running, 0 failed" in status.stdout
    results = pd.read_csv(run_dir / "results.csv")
    assert len(results) == 8 and {"student.hidden", "train.lr"} <= set(results.columns)
    per_class = pd.read_csv(run_dir / "results_per_class.csv")
    assert sorted(per_class["event_label"].unique()) == sorted(URBAN)
    assert len(per_class) == 8 * 2 * 6  # jobs x splits x classes
    result = json.loads(next((run_dir / "jobs").glob("*/result.json")).read_text())
    assert list(result["per_class"]["test"]) == sorted(URBAN)  # the study's order: sorted labels
    manifest = json.loads(next((base / "cache" / "stages").glob("*/manifest.json")).read_text())
    assert manifest["classes"] == sorted(URBAN) and manifest["n_frames"] == 400
    assert len(manifest["event_frames"]["median"]) == 6
    with np.load(next((run_dir / "jobs").glob("*/probabilities_test.npz"))) as npz:
        assert npz["frame"].shape == (6, 6, 400) and list(npz["classes"]) == sorted(URBAN)
    # The report's per-class figure: its columns are the dataset's classes, not DESED's.
    variants = list(dict.fromkeys(results["variant"]))
    rows, classes, matrix = _per_class_matrix(per_class, variants, "validation")
    assert rows == variants and classes == sorted(URBAN) and matrix.shape == (4, 6)
    report = base / "reports" / "urban-tiny"
    figures = report / "figures"
    assert (figures / "per_class_validation.png").is_file() and (figures / "per_class_test.png").is_file()
    # the grid's factors: their columns in the tables, a figure each, the generated comparisons in Table 4
    assert {"Hidden units", "train.lr"} <= set(pd.read_csv(report / "tables" / "urban.csv").columns)
    assert (figures / "factor_student_hidden.png").is_file() and (figures / "factor_train_lr.png").is_file()
    table4 = pd.read_csv(report / "tables" / "table4_val_f1.csv")
    assert list(table4["comparison"]) == ["Hidden units 8 vs 16 (train.lr=0.001)",
                                          "Hidden units 8 vs 16 (train.lr=0.003)"]


def test_events_of_a_short_clip_end_at_its_real_length(urban):
    base = urban[0]
    events = pd.concat(pd.read_csv(path, sep="\t")
                       for path in (base / "runs" / "urban-tiny" / "jobs").glob("*/predictions_*.tsv"))
    short = events[events["filename"].str.endswith(("_000.wav", "_003.wav"))]  # the 6.5-s clips
    assert len(short) and (short["offset"] <= SHORT + 1e-6).all() and (events["offset"] <= SECONDS + 1e-6).all()


def test_rescore_scores_the_dataset_classes(urban):
    base = urban[0]
    rescored = pd.read_csv(base / "runs" / "urban-tiny" / "rescore" / "t04" / "results_per_class.csv")
    assert sorted(rescored["event_label"].unique()) == sorted(URBAN) and len(rescored) == 8 * 2 * 6
    report = harness("report", base / "runs" / "urban-tiny", "--rescore", "t04", "--cache", base / "cache",
                     "--out", base / "report-t04", cwd=base)
    assert report.returncode == 0 and (base / "report-t04" / "figures" / "per_class_test.png").is_file()


def test_a_label_outside_data_classes_names_its_file_and_line(urban):
    base, root, study, common = urban[:4]
    tsv = root / LAYOUT["synthetic"][1]
    line = next(i for i, row in enumerate(tsv.read_text().splitlines(), 1) if row.endswith("\tstreet_music"))
    five = '["car_horn", "dog_bark", "drilling", "jackhammer", "siren"]'
    out = harness("run", study, *common, "--set", f"data.classes={five}", "--no-report", cwd=base, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert (f"{tsv}, line {line}: unknown class 'street_music'; valid classes: car_horn, dog_bark, drilling, "
            "jackhammer, siren; correct the label, or add it to [data] classes") in out.stderr


def test_frames_short_of_the_longest_clip_name_it_and_the_frames_to_set(urban):
    base, root, study, common = urban[:4]
    out = harness("run", study, *common, "--set", "features.n_frames=300", "--no-report", cwd=base, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    longest = root / LAYOUT["synthetic"][2] / "synthetic_000.wav"
    assert (f"features.n_frames x features.hop_seconds = 300 x 0.02 = 6 s does not cover the longest clip, "
            f"{longest} (8.00 s); set features.n_frames = 400 for this hop") in out.stderr


def test_without_unlabeled_or_weak_clips_a_variant_needing_them_is_refused_before_any_work(tmp_path):
    root = generate(tmp_path / "street", ("synthetic", "validation", "test"))
    check = harness("data", "check", root, cwd=tmp_path).stdout
    assert "unlabeled   absent" in check and "weak        absent" in check
    common = ("--profile", "tiny", "--runs", tmp_path / "runs", "--cache", tmp_path / "cache", "--no-report")
    refused = harness("run", _study(tmp_path / "two.toml", "two", root), *common, cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert ("variant 'SW': factor pseudolabels = 'strong+weak' (loss.pseudolabels) needs the unlabeled subset, "
            "but the data has no unlabeled clips") in refused.stderr
    assert not list((tmp_path / "cache").glob("features/*.npy")) and not (tmp_path / "runs" / "two-tiny").exists()
    plan = harness("plan", tmp_path / "two.toml", *common[:-1], cwd=tmp_path, check=False)
    assert plan.returncode == 2 and "needs the unlabeled subset" in plan.stderr
    harness("run", _study(tmp_path / "one.toml", "one", root, NONE_ONLY, seeds=1), *common, "--jobs", "1",
            cwd=tmp_path)
    results = pd.read_csv(tmp_path / "runs" / "one-tiny" / "results.csv")
    assert list(results["pseudolabels"]) == ["none"] and results["val_f1"].notna().all()
