"""Plugins through the CLI: the example package's model and metric in a tiny study, rescored and reported; an
edited plugin reruns its jobs and an unchanged one none; a broken or missing plugin is refused before any work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from conftest import warm_cache

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "harness-example-plugin"

STUDY = """
[study]
name = "plug"
seeds = 2
plugins = ["harness_example"{more}]

[[variant]]
name = "LSTM"

[[variant]]
name = "TinyConv"
"student.model" = "tinyconv"
"student.channels" = 8
{variants}
[[comparison]]
a = "TinyConv"
b = "LSTM"
"""

# A plugin of one file, with a model only: its jobs depend on its code, the LSTM's do not.
FILE_PLUGIN = '''
from dataclasses import dataclass

from harness import plugins
from harness.model.config import ModelConfig
from harness.model.size import ModelSize


@dataclass(frozen=True)
class MeanConfig(ModelConfig):
    model: str = "framewise"


def build(config, n_mels, n_classes):
    import torch

    class Framewise(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(n_mels, n_classes)

        def forward(self, x):
            frame = torch.sigmoid(self.head(x.float()))
            return frame.transpose(1, 2), frame.mean(dim=1)

    return Framewise()


def size(config, n_mels, n_classes, n_frames):
    return ModelSize(params=n_mels * n_classes + n_classes, macs_per_frame=n_mels * n_classes,
                     macs_per_clip=n_mels * n_classes * n_frames, n_frames=n_frames)


plugins.models.register("framewise", plugins.ModelSpec(name="framewise", config=MeanConfig, build=build, size=size))
'''


def harness(*args, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                         timeout=900, env=env)
    if check:
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def example_env(package_parent: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(package_parent),
                                                                       os.environ.get("PYTHONPATH", "")]))}


@pytest.fixture(scope="module")
def plugged(tmp_path_factory, tiny_corpus, tiny_stages):
    root = tmp_path_factory.mktemp("plugins")
    warm_cache(tiny_stages, root)  # the prebuilt shared stages: the plugins are what this is about
    package = Path(shutil.copytree(EXAMPLE, root / "example"))  # a copy: a test edits its source
    (root / "framewise.py").write_text(FILE_PLUGIN)
    variants = '\n[[variant]]\nname = "Framewise"\n"student.model" = "framewise"\n'
    (root / "plug.toml").write_text(STUDY.format(more=', "./framewise.py"', variants=variants)
                                    + f'\n[data]\nroot = "{tiny_corpus}"\n')
    env = example_env(package)
    common = ("--profile", "tiny", "--runs", root / "runs", "--cache", root / "cache")
    harness("run", root / "plug.toml", *common, "--jobs", "2", "--reports", root / "reports", cwd=root, env=env)
    return root, package, env, common


def test_the_example_model_and_metric_run_and_are_scored(plugged, tiny_corpus):
    root, package, env, _ = plugged
    run = root / "runs" / "plug-tiny"
    table = pd.read_csv(run / "results.csv")
    assert list(table["variant"]) == ["LSTM", "LSTM", "TinyConv", "TinyConv", "Framewise", "Framewise"]
    assert list(table["student.model"]) == ["lstm", "lstm", "tinyconv", "tinyconv", "framewise", "framewise"]
    # the model's own size: the example's formula, equal to the parameters of the module it builds
    sys.path.insert(0, str(package))
    try:
        from harness_example.model import TinyConvConfig, build
        module = build(TinyConvConfig(channels=8), 20, 10)
    finally:
        sys.path.remove(str(package))
    tiny = table[table["variant"] == "TinyConv"]
    assert (tiny["params"] == sum(p.numel() for p in module.parameters())).all()
    assert (table.loc[table["variant"] == "Framewise", "params"] == 20 * 10 + 10).all()
    # the metric's column, equal to a Mann-Whitney AUC computed here from the saved clip probabilities
    row = tiny.iloc[0]
    with np.load(run / "jobs" / row["job_id"] / "probabilities_test.npz") as npz:
        clip, clip_ids, classes = npz["clip"], list(npz["clip_ids"]), list(npz["classes"])
    reference = pd.read_csv(tiny_corpus / "metadata" / "eval" / "public.tsv", sep="\t").dropna()
    aucs = []
    for j, name in enumerate(classes):
        holds = {f for f, label in zip(reference["filename"], reference["event_label"]) if label == name}
        positive = np.array([c in holds for c in clip_ids])
        if 0 < positive.sum() < len(positive):
            u = mannwhitneyu(clip[positive, j], clip[~positive, j]).statistic
            aucs.append(u / (positive.sum() * (~positive).sum()))
    assert row["test_clip_auc"] == pytest.approx(100 * np.mean(aucs), abs=1e-3)


def test_report_and_rescore_know_the_plugin_metric(plugged):
    root, _, env, _ = plugged
    run = root / "runs" / "plug-tiny"
    out = harness("report", run, "--metric", "clip_auc", "--out", root / "auc", cwd=root, env=env)
    assert "report:" in out.stdout
    table4 = pd.read_csv(root / "auc" / "tables" / "table4_val_clip_auc.csv")
    assert list(table4["comparison"]) == ["TinyConv vs LSTM"]
    harness("rescore", run, "--set", "postprocess.threshold=0.4", "--name", "t04", "--cache", root / "cache",
            "--jobs", "1", cwd=root, env=env)
    rescored = pd.read_csv(run / "rescore" / "t04" / "results.csv")
    original = pd.read_csv(run / "results.csv")
    # the clip AUC reads clip probabilities, which a frame threshold does not change: the same values
    assert rescored["val_clip_auc"].tolist() == pytest.approx(original["val_clip_auc"].tolist())


def test_an_edited_plugin_reruns_its_jobs_and_only_those(plugged):
    root, package, env, common = plugged
    before = pd.read_csv(root / "runs" / "plug-tiny" / "results.csv")
    again = harness("run", root / "plug.toml", *common, "--no-report", cwd=root, env=env)
    assert "(6 jobs: 0 ran, 6 kept from before, 0 failed)" in again.stdout
    source = root / "framewise.py"
    source.write_text(source.read_text() + "\n# an edit: the code of this model changed\n")
    edited = harness("run", root / "plug.toml", *common, "--no-report", cwd=root, env=env)
    assert "(6 jobs: 2 ran, 4 kept from before, 0 failed)" in edited.stdout, edited.stdout
    after = pd.read_csv(root / "runs" / "plug-tiny" / "results.csv")
    changed = set(before["job_id"]) ^ set(after["job_id"])
    assert {v for v, j in zip(pd.concat([before, after])["variant"], pd.concat([before, after])["job_id"])
            if j in changed} == {"Framewise"}


@pytest.mark.parametrize("plugin, expected", [
    ('"./broken.py"', "plugin './broken.py' failed while loading: ZeroDivisionError"),
    ('"no_such_plugin_pkg"', "plugin 'no_such_plugin_pkg' cannot be imported"),
    ('"./missing.py"', "plugin './missing.py': no such file"),
])
def test_a_broken_or_missing_plugin_is_refused_before_any_work(tmp_path, plugin, expected):
    (tmp_path / "broken.py").write_text("from harness import plugins\n1 / 0\n")
    (tmp_path / "s.toml").write_text(f'[study]\nname = "b"\nplugins = [{plugin}]\n\n[[variant]]\nname = "A"\n')
    out = harness("run", tmp_path / "s.toml", "--profile", "tiny", "--runs", tmp_path / "runs", "--cache",
                  tmp_path / "cache", cwd=tmp_path, check=False)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert expected in out.stderr and "s.toml" in out.stderr, out.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()
