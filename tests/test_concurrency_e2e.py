"""Two studies started at the same moment on one empty cache: both succeed, the corpus is built once."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd

STUDY = """
[study]
name = "{name}"
seeds = [0]

[[variant]]
name = "EM+CS"
curriculum = "all"
pseudolabels = "strong+weak"
masking = "event"
augmentation = "custom"
"""


def test_two_studies_on_one_new_cache_share_one_corpus_and_bundle(tmp_path):
    procs = []
    for name in ("first", "second"):
        (tmp_path / f"{name}.toml").write_text(STUDY.format(name=name))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "harness", "run", str(tmp_path / f"{name}.toml"), "--profile", "tiny", "--runs",
             str(tmp_path / "runs"), "--cache", str(tmp_path / "cache"), "--backend", "inprocess", "--no-report"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    corpora = list((tmp_path / "cache" / "corpora").iterdir())
    assert [c.name for c in corpora if not c.name.startswith(".")] == ["synth-tiny-0"]
    assert (corpora[0].parent / "synth-tiny-0" / ".complete").exists()
    bundles = [b for b in (tmp_path / "cache" / "stages").iterdir() if not b.name.startswith(".")]
    assert len(bundles) == 1 and not list((tmp_path / "cache" / "stages").glob("*.tmp*"))
    assert sum("teacher: training" in err for _, err in outs) == 1  # one built it, the other waited and reused it
    a, b = (pd.read_csv(tmp_path / "runs" / f"{n}-tiny" / "results.csv") for n in ("first", "second"))
    cols = ["job_id", "val_f1", "test_f1", "best_epoch"]
    pd.testing.assert_frame_equal(a[cols], b[cols])  # same job, same bundle: the same numbers
