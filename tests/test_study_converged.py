"""--until-converged: which variants a run's curves flag, and the command's refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness.study.converged_run import unconverged_variants


def _run_dir(root: Path, curves: dict[str, list[list[float]]]) -> Path:
    rows = []
    for variant, runs in curves.items():
        for seed, curve in enumerate(runs):
            job_id = f"{variant}-{seed}"
            (root / "jobs" / job_id).mkdir(parents=True)
            pd.DataFrame({"epoch": np.arange(1, len(curve) + 1), "val_f1": curve}).to_csv(
                root / "jobs" / job_id / "metrics.csv", index=False)
            rows.append({"job_id": job_id, "variant": variant, "seed": seed})
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    return root


def test_a_variant_is_flagged_when_one_of_its_runs_still_rises(tmp_path):
    flat = [40.0, 41.0, 42.0, 42.5] + [42.6, 42.4] * 8  # 20 epochs, a plateau from epoch 4
    rising = list(np.linspace(20.0, 40.0, 20))  # still climbing at the end
    run_dir = _run_dir(tmp_path, {"A": [flat, flat], "B": [flat, rising]})
    assert unconverged_variants(run_dir) == ["B"]


def test_until_converged_refuses_a_cap_below_the_budget(tmp_path, tiny_corpus):
    (tmp_path / "s.toml").write_text(f'[study]\nname = "c"\nseeds = 1\n[[variant]]\nname = "A"\n'
                                     f'[data]\nroot = "{tiny_corpus}"\n')
    out = subprocess.run([sys.executable, "-m", "harness", "run", str(tmp_path / "s.toml"), "--profile", "tiny",
                          "--runs", str(tmp_path / "runs"), "--cache", str(tmp_path / "cache"), "--set",
                          "train.steps=40", "--until-converged", "--max-steps", "20"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 2 and "--max-steps 20 is below the study's own train.steps = 40" in out.stderr
