"""Seed streams and several teachers (issue 24, items 1 and 2).

A run's randomness comes from named streams (harness.streams): init, order, augment, and the teacher it distils
from. By default every stream follows the run's seed and one teacher serves the study: the job ids and the
numbers are those of the code before streams existed. A study varies streams as a crossed or nested design and
trains several teachers (`teacher_seeds`), each its own bundle, the runs balanced over them.

The hard-coded ids and numbers below were obtained by running the code of commit 7b6d1f2 (with the working
tree of that day, before harness/streams.py existed) on this machine's CPU with one thread: the tiny
profile's `base` job (conftest.tiny_study_job) trained 9 steps with train_student at seeds 0 and 1, and the
STUDY file below (`seeds = 2`) run through the CLI (`--profile tiny --backend inprocess`).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import warm_cache
from harness import identity
from harness.bundle import Bundle
from harness.config import MethodConfig
from harness.errors import ConfigError
from harness.method.train import train_student
from harness.streams import SeedStreams
from harness.study.plan import expand, resolve
from harness.study.spec import parse_study, split_overrides

CPU = torch.device("cpu")

# Before streams: per epoch (loss_weak, loss_strong, loss_unlabeled, loss_total) of the tiny `base` job,
# 9 steps (4 epochs), seeds 0 and 1; val F1 was 0.0 in every epoch.
BEFORE_LOSSES = {
    0: [(0.6858368515968323, 1.365426778793335, 0.0, 2.051263689994812),
        (0.6700891852378845, 1.3583120703697205, 1.3997595310211182, 3.4281609058380127),
        (0.6717706322669983, 1.3524307608604431, 1.4002475142478943, 3.4244489669799805),
        (0.4452713529268901, 1.3487026691436768, 1.4013948043187459, 3.195368846257528)],
    1: [(0.6993487179279327, 1.388193964958191, 0.0, 2.0875426530838013),
        (0.6948705315589905, 1.3780293464660645, 1.3886446952819824, 3.4615445137023926),
        (0.692848414182663, 1.3705883026123047, 1.3889963626861572, 3.4524331092834473),
        (0.678784986337026, 1.369457721710205, 0.9262457688649496, 2.9744884173075357)],
}
# Before streams, STUDY through the CLI: job id -> (seed, val_f1, test_f1, val_segment_f1, test_segment_f1).
BEFORE_JOBS = {
    "d08c577fa39e": (0, 0.0, 0.0, 14.601003191974465, 16.26027047511062),
    "e3f3ff12dc5e": (1, 0.0, 2.2222222222222223, 10.01136371861406, 20.320734560223226),
}

STUDY = """
[study]
name = "streams"
{seeds}

[[variant]]
name = "EF+SW+EM+CS"
curriculum = "easier"
pseudolabels = "strong+weak"
masking = "event"
augmentation = "custom"

[data]
root = "{root}"
"""


def _train(job, bundle_root, steps: int, seed: int = 0, streams: SeedStreams | None = None):
    torch.set_num_threads(1)
    config = dataclasses.replace(job.config, train=dataclasses.replace(job.config.train, steps=steps))
    return train_student(config, Bundle.open(bundle_root), seed, CPU, streams=streams)


def _losses(outcome) -> list[tuple[float, ...]]:
    return [(e.loss_weak, e.loss_strong, e.loss_unlabeled, e.loss_total) for e in outcome.epochs]


# ---------------------------------------------------------------- the training code


@pytest.mark.parametrize("seed", [0, 1])
def test_default_streams_train_the_numbers_of_before(tiny_study_job, tiny_bundle, seed):
    assert tiny_study_job.job_id == "d08c577fa39e"  # the tiny `base` job's id before streams
    for streams in (None, SeedStreams(seed, seed, seed)):
        outcome = _train(tiny_study_job, tiny_bundle, 9, seed, streams)
        assert [e.val_f1 for e in outcome.epochs] == [0.0] * 4
        for got, want in zip(_losses(outcome), BEFORE_LOSSES[seed], strict=True):
            assert got == pytest.approx(want, rel=1e-5)


def test_order_changes_the_batch_order_not_the_initial_weights(tiny_study_job, tiny_bundle):
    def initial(streams):  # no step: train_student returns the model as its `init` stream built it
        return _train(tiny_study_job, tiny_bundle, 0, 0, streams).model.state_dict()

    default, order1, init1 = initial(None), initial(SeedStreams(0, 1, 0)), initial(SeedStreams(1, 0, 0))
    assert all(torch.equal(default[k], order1[k]) for k in default)
    assert not all(torch.equal(default[k], init1[k]) for k in default)
    # the first epoch's loss moves with the order (and with the augmentation draws), not only with init
    first = {s: _losses(_train(tiny_study_job, tiny_bundle, 2, 0, s))[0][3]
             for s in (SeedStreams(0, 1, 0), SeedStreams(0, 0, 1))}
    assert all(v != pytest.approx(BEFORE_LOSSES[0][0][3], rel=1e-4) for v in first.values())


def test_job_id_takes_streams_only_when_they_differ_from_the_seed():
    before = "ef8d19eb5d3e"  # identity.job_id(MethodConfig(), 0, "b" * 16) before streams (tests/test_model_crnn.py)
    assert identity.job_id(MethodConfig(), 0, "b" * 16) == before
    assert identity.job_id(MethodConfig(), 0, "b" * 16, streams=SeedStreams(0, 0, 0).differing(0)) == before
    ids = {identity.job_id(MethodConfig(), 0, "b" * 16, streams=SeedStreams(*s).differing(0))
           for s in ((0, 1, 0), (1, 0, 0), (0, 0, 1))}
    assert len(ids) == 3 and before not in ids


# ---------------------------------------------------------------- expansion of a design


def _study(tmp_path: Path, head: str, profile: str = "quick", overrides: list[str] | None = None):
    text = STUDY.format(seeds=head, root="unused").replace('[data]\nroot = "unused"\n', "")
    path = tmp_path / "s.toml"
    path.write_text(text)
    import tomllib

    spec = parse_study(tomllib.loads(text), path)
    desed = str(tmp_path) if profile == "paper" else None  # the paper profile's DESED root: only checked to exist
    return resolve(spec, profile, tmp_path, split_overrides(overrides or []), data_root=desed)


def _streams(jobs) -> list[dict[str, int]]:
    return [dict(j.streams) for j in jobs]


def test_crossed_design_expands_every_combination(tmp_path):
    jobs = expand(_study(tmp_path, "seeds = { init = 3, order = 3 }\nteacher_seeds = 2"))
    assert len(jobs) == 18 and [j.seed for j in jobs] == list(range(18))
    cells = [(s["teacher"], s["init"], s["order"], s["augment"]) for s in _streams(jobs)]
    assert cells == [(t, i, o, 0) for t in (0, 1) for i in range(3) for o in range(3)]
    assert {j.teacher_seed for j in jobs} == {0, 1}
    # the run whose streams all follow its seed (run 0) is the job of default streams
    default = expand(_study(tmp_path, "seeds = 1"))[0]
    assert jobs[0].job_id == default.job_id and jobs[0].seed_streams == SeedStreams(0, 0, 0)
    assert len({j.job_id for j in jobs}) == 18


def test_nested_design_gives_every_inner_level_its_own_seeds(tmp_path):
    jobs = expand(_study(tmp_path, 'seeds = { init = 2, order = 3 }\nstreams = "nested"\nteacher_seeds = 2'))
    cells = [(s["teacher"], s["init"], s["order"]) for s in _streams(jobs)]
    assert cells == [(t, 2 * t + i, 3 * (2 * t + i) + o) for t in (0, 1) for i in range(2) for o in range(3)]
    assert sorted(c[2] for c in cells) == list(range(12))  # no order seed shared by two inits


def test_a_profiles_count_keeps_each_streams_first_seeds(tmp_path):
    head = "seeds = { init = [5, 6, 7], order = 3 }\nteacher_seeds = 3"
    assert len(expand(_study(tmp_path, head, "paper"))) == 27
    tiny = expand(_study(tmp_path, head, "tiny"))  # 2 seeds a stream; teachers are never cut
    assert sorted({(s["init"], s["order"]) for s in _streams(tiny)}) == [(5, 0), (5, 1), (6, 0), (6, 1)]
    assert len(tiny) == 12
    assert len(expand(_study(tmp_path, head, "paper", ["seeds=1"]))) == 3
    with pytest.raises(ConfigError, match=r"--set seeds.*give a count"):
        _study(tmp_path, head, "paper", ["seeds=[3, 4]"])


def test_one_seed_per_run_over_teachers_is_balanced(tmp_path):
    jobs = expand(_study(tmp_path, "seeds = 6\nteacher_seeds = 2\nteacher_seed = 10", "paper"))
    assert [j.teacher_seed for j in jobs] == [10, 11, 10, 11, 10, 11]
    assert _streams(jobs)[3] == {"teacher": 11, "init": 3, "order": 3, "augment": 3}
    assert [j.seed_streams for j in jobs] == [SeedStreams.following(s) for s in range(6)]
    one = expand(_study(tmp_path, "seeds = 6", "paper"))
    assert all(j.streams == () for j in one)
    # without bundle keys the teacher is not in the id: the ids are those of one teacher
    assert [j.job_id for j in jobs] == [j.job_id for j in one]


@pytest.mark.parametrize("head, message", [
    ("seeds = { weights = 3 }", r"seeds: unknown stream 'weights'; streams: teacher, init, order, augment"),
    ("seeds = {}", r"seeds: names no stream; streams: teacher, init, order, augment"),
    ("seeds = { init = 0 }", r"seeds\.init: need at least one seed, got 0"),
    ("seeds = { init = 2 }\nteacher_seeds = 0", r"teacher_seeds: need at least one seed, got 0"),
    ('seeds = { init = 2, order = [1, 2] }\nstreams = "nested"', r"seeds\.order: a nested design takes a count"),
    ('seeds = 3\nstreams = "nested"', r"streams = 'nested' needs seeds as a table of streams"),
    ('seeds = { init = 2 }\nstreams = "random"', r'\[study\] streams: expected "crossed" or "nested"'),
    ("seeds = { init = 2, teacher = 3 }\nteacher_seeds = 2", r"seeds\.teacher 3 and teacher_seeds 2"),
    ("seeds = 2\nteacher_seeds = [1, 2]\nteacher_seed = 1", r"teacher_seeds: a list of teacher seeds"),
])
def test_bad_streams_name_the_key(tmp_path, head, message):
    with pytest.raises(ConfigError, match=message) as e:
        _study(tmp_path, head)
    assert str(tmp_path / "s.toml") in str(e.value)


def test_a_file_teacher_cannot_be_several(tmp_path):
    study = _study(tmp_path, 'seeds = 2\nteacher_seeds = 2\n\n[base]\nteacher.source = "file"\n'
                             f'teacher.predictions = "{tmp_path / "t.h5"}"')
    with pytest.raises(ConfigError, match=r"teacher_seeds: 2 teachers, but variant 'EF\+SW\+EM\+CS' reads its teacher"):
        expand(study)


# ---------------------------------------------------------------- through the CLI


def _run(root: Path, name: str, seeds: str) -> pd.DataFrame:
    (root / f"{name}.toml").write_text(STUDY.format(seeds=seeds, root=root.parent / "corpus"))
    out = subprocess.run([sys.executable, "-m", "harness", "run", root / f"{name}.toml", "--profile", "tiny",
                          "--runs", root / "runs", "--cache", root / "cache", "--name", name, "--no-report",
                          "--backend", "inprocess"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return pd.read_csv(root / "runs" / name / "results.csv")


@pytest.fixture(scope="module")
def cli_runs(tiny_corpus: Path, tiny_stages: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default study and the crossed design (2 init x 2 order x 2 teachers), one cache between them."""
    import shutil

    base = tmp_path_factory.mktemp("streams")
    shutil.copytree(tiny_corpus, base / "corpus")
    root = base / "work"
    root.mkdir()
    warm_cache(tiny_stages, root)  # teacher 0's bundle, prebuilt (conftest); the crossed design builds teacher 1's
    _run(root, "default", "seeds = 2")
    _run(root, "crossed", "seeds = { init = 2, order = 2 }\nteacher_seeds = 2")
    return root


def test_default_streams_through_the_cli_keep_ids_and_numbers(cli_runs):
    table = pd.read_csv(cli_runs / "runs" / "default" / "results.csv")
    assert not [c for c in table.columns if c.startswith("seed_")]
    got = {r.job_id: (r.seed, r.val_f1, r.test_f1, r.val_segment_f1, r.test_segment_f1) for r in table.itertuples()}
    assert got.keys() == BEFORE_JOBS.keys()
    for job_id, want in BEFORE_JOBS.items():
        assert got[job_id] == pytest.approx(want, abs=1e-3)  # results.csv keeps 4 decimals
    study = json.loads((cli_runs / "runs" / "default" / "study.json").read_text())
    assert study["streams_design"] == "" and [r["name"] for r in study["reference_rows"]] == ["Teacher (ours)"]


def test_two_teachers_crossed_with_init_and_order(cli_runs):
    run = cli_runs / "runs" / "crossed"
    table = pd.read_csv(run / "results.csv")
    columns = list(table.columns)
    assert columns[columns.index("seed") + 1:][:4] == ["seed_teacher", "seed_init", "seed_order", "seed_augment"]
    assert len(table) == 8 and table["seed_augment"].eq(0).all()
    cells = sorted(zip(table.seed_teacher, table.seed_init, table.seed_order))
    assert cells == [(t, i, o) for t in (0, 1) for i in (0, 1) for o in (0, 1)]
    # two teachers, two bundles, four runs each; one bundle per teacher
    assert table.groupby("seed_teacher")["bundle_key"].nunique().tolist() == [1, 1]
    assert table["bundle_key"].nunique() == 2 and table["seed_teacher"].value_counts().tolist() == [4, 4]
    assert all((cli_runs / "cache" / "stages" / key / "manifest.json").is_file() for key in table["bundle_key"])
    manifests = {json.loads((cli_runs / "cache" / "stages" / k / "manifest.json").read_text())["teacher_seed"]
                 for k in table["bundle_key"].unique()}
    assert manifests == {0, 1}
    # the cell whose streams all follow seed 0, on teacher 0, is the default study's seed-0 job
    zero = table[(table.seed_teacher == 0) & (table.seed_init == 0) & (table.seed_order == 0)]
    assert zero["job_id"].tolist() == ["d08c577fa39e"]
    study = json.loads((run / "study.json").read_text())
    assert study["streams_design"] == "crossed" and study["streams"] == ["teacher", "init", "order"]
    assert study["teacher_seeds"] == [0, 1]
    assert [r["name"] for r in study["reference_rows"]] == ["Teacher (seed 0)", "Teacher (seed 1)"]


def test_first_epoch_moves_with_order_not_with_teacher(cli_runs):
    """Generation 1 trains on labelled clips only: its loss depends on init and order, not on the teacher."""
    run = cli_runs / "runs" / "crossed"
    table = pd.read_csv(run / "results.csv")
    first = {(r.seed_teacher, r.seed_init, r.seed_order):
             pd.read_csv(run / "jobs" / r.job_id / "metrics.csv")["loss_total"].iloc[0] for r in table.itertuples()}
    for i in (0, 1):
        for o in (0, 1):
            assert first[(0, i, o)] == first[(1, i, o)]
        assert first[(0, i, 0)] != first[(0, i, 1)]


def test_the_crossed_design_is_reported_with_its_variance_components(cli_runs):
    """Two teachers: a variant's runs come from two bundles by design, and the report estimates each stream's
    share of the variance (harness.report.variance) from the recorded stream columns."""
    out_dir = cli_runs / "report-crossed"
    out = subprocess.run([sys.executable, "-m", "harness", "report", cli_runs / "runs" / "crossed", "--out", out_dir],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    components = pd.read_csv(out_dir / "tables" / "variance_components.csv")
    assert {"teacher", "init", "order"} <= set(components.iloc[:, :4].astype(str).stack())
    assert (out_dir / "figures" / "variance_components.png").is_file()
