"""The report's variance-components section: runs simulated with known stream components, reported, and the
table equal to harness.report.variance called directly; a study whose streams all follow the seed has none."""

import itertools

import numpy as np
import pandas as pd
import pytest

from harness.report import build_report, sections
from harness.report.variance import reading, variance_components
from harness.records import Budget, ComparisonInfo, Resolution, StudyRecord, TableInfo, VariantInfo, write_record
from harness.schema import RESULTS_COLUMNS

FACTORS = {"curriculum": "all", "pseudolabels": "strong+weak", "masking": "event", "augmentation": "custom"}
VARIANTS = ("A", "B")
# True components (points²) of the crossed design, per variant: 3 inits x 3 orders x 2 runs a cell.
SIGMA2 = {"init": 4.0, "order": 1.0, "residual": 0.25}
MEANS = {"A": 40.0, "B": 38.0}


def simulate(rng, mean):
    """(init, order, val F1) of 18 runs: a random effect per init and per order level, plus noise."""
    cells = list(itertools.product(range(3), range(3))) * 2
    init = rng.normal(0, np.sqrt(SIGMA2["init"]), 3)
    order = rng.normal(0, np.sqrt(SIGMA2["order"]), 3)
    noise = rng.normal(0, np.sqrt(SIGMA2["residual"]), len(cells))
    return [(i, o, mean + init[i] + order[o] + e) for (i, o), e in zip(cells, noise)]


def write_run(root, streams=True):
    """runs/<study>/ with study.json and a results.csv whose runs carry the seed-stream columns (or not)."""
    run_dir = root / "streams"
    run_dir.mkdir(parents=True)
    rng = np.random.default_rng(24)
    rows = []
    for variant in VARIANTS:
        for n, (init, order, val) in enumerate(simulate(rng, MEANS[variant])):
            row = {c: "" for c in RESULTS_COLUMNS}
            row.update({"study": "streams", "job_id": f"{variant}-{n}", "variant": variant, **FACTORS,
                        "lambda1": 1.0, "lambda2": 1.0, "seed": n, "profile": "test", "val_f1": val,
                        "test_f1": val + rng.normal(0, 0.5), "best_epoch": 3, "steps": 100, "wall_seconds": 1.0,
                        "config_key": f"c-{variant}", "bundle_key": "b1", "data_digest": "d1", "threads": 1})
            if streams:  # seeds of the streams: augment changes with every run, one teacher
                row.update({"seed_init": 100 + init, "seed_order": 200 + order, "seed_augment": 300 + n,
                            "seed_teacher": 7})
            rows.append(row)
    pd.DataFrame(rows).to_csv(run_dir / "results.csv", index=False)
    record = StudyRecord(
        name="streams", run_name="streams", description="Crossed seed streams with known components",
        resolution=Resolution(file="/x/streams.toml", profile="test", overrides=(), overrides_key="k",
                              data_root="synthetic:quick:0", data_digest="d1"),
        budget=Budget(steps=100, hidden=32, layers=3, teacher_models=2, teacher_channels=24, teacher_source="train"),
        generation_epochs=3, tables=(TableInfo("Table 1", "Streams", VARIANTS),),
        variants=tuple(VariantInfo(v, FACTORS) for v in VARIANTS),
        comparisons=(ComparisonInfo("A vs B", "A", "B"),), reference_rows=(), seeds=tuple(range(18)), jobs=(),
        git_commit="abc")
    write_record(run_dir / "study.json", record)
    return run_dir


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("variance")
    run_dir = write_run(root)
    build_report(run_dir, root / "out")
    return run_dir, root / "out"


def test_components_equal_the_module_and_cover_the_truth(built):
    run_dir, out = built
    results = pd.read_csv(run_dir / "results.csv")
    table = pd.read_csv(out / "tables" / "variance_components.csv")
    for i, variant in enumerate(VARIANTS):
        runs = results[results["variant"] == variant]
        for j, metric in enumerate(("val_f1", "test_f1")):
            frame = pd.DataFrame({"init": runs["seed_init"], "order": runs["seed_order"], metric: runs[metric]})
            direct = variance_components(frame, ["init", "order"], metric,
                                         np.random.default_rng([0, sections.VARIANCE_TAG, i, j]))
            got = table[(table["variant"] == variant) & (table["metric"] == metric)].set_index("component")
            # seed_augment changes with every run: it is in the residual, not a factor of its own
            assert list(got.index) == ["init", "order", "residual"]
            for c in direct.components:
                row = got.loc[c.name]
                assert row["variance"] == pytest.approx(c.variance, rel=1e-5)
                assert row["share"] == pytest.approx(c.share, rel=1e-5)
                assert (row["share_low"], row["share_high"]) == pytest.approx((c.share_low, c.share_high), rel=1e-5)
                assert (row["variance_low"], row["variance_high"]) == pytest.approx((c.low, c.high), rel=1e-5)
                assert row["design"] == "crossed" and row["df"] == c.df
            if metric == "val_f1":  # the simulated truth lies within the 95 % intervals (seeded)
                for name, truth in SIGMA2.items():
                    assert got.loc[name, "variance_low"] <= truth <= got.loc[name, "variance_high"]


def test_reading_figure_and_sources(built):
    run_dir, out = built
    md = (out / "report.md").read_text()
    assert "## Where the variance comes from: seed streams" in md
    assert (out / "figures" / "variance_components.png").stat().st_size > 0
    results = pd.read_csv(run_dir / "results.csv")
    runs = results[results["variant"] == "A"]
    frame = pd.DataFrame({"init": runs["seed_init"], "order": runs["seed_order"], "val_f1": runs["val_f1"]})
    rng = np.random.default_rng([0, sections.VARIANCE_TAG, 0, 0])  # variant 0 (A), metric 0 (val F1)
    vc = variance_components(frame, ["init", "order"], "val_f1", rng)
    labels = {"residual": "what the design does not separate (the augment stream, which changes with every run, "
                          "interactions and run-to-run noise)"}
    assert f"A (val F1): {reading(vc, labels)}" in md
    beyond = pd.read_csv(out / "tables" / "table4_val_f1_beyond.csv").set_index("comparison")
    assert beyond.loc["A vs B", "sources_varied"] == "init (3), order (3), augment (18); 1 teacher"


def test_a_study_whose_runs_have_only_a_seed_has_no_section(tmp_path):
    build_report(write_run(tmp_path, streams=False), tmp_path / "out")
    assert "Where the variance comes from" not in (tmp_path / "out" / "report.md").read_text()
    assert not (tmp_path / "out" / "tables" / "variance_components.csv").exists()
    assert not (tmp_path / "out" / "figures" / "variance_components.png").exists()


def stream_runs(teacher, init, order, augment, y):
    return pd.DataFrame({"variant": "A", "seed": range(len(y)), "seed_teacher": teacher, "seed_init": init,
                         "seed_order": order, "seed_augment": augment, "val_f1": y})


def test_streams_that_follow_the_seed_make_no_design(tmp_path):
    y = np.arange(6, dtype=float)
    same = np.arange(6)  # every stream is the run's seed (issue 24's default): nothing to split
    assert sections.variance_blocks(tmp_path, stream_runs(0, same, same, same, y), {}, ["A"], ["val_f1"]) == []
    said = sections.sources_varied(stream_runs(0, same, same, same, y))
    assert said == "init + order + augment (6, together); 1 teacher"


def test_several_teachers_with_the_rest_following_the_seed(tmp_path):
    # 2 teachers x 3 runs each, every other stream the run's seed: teacher is the factor, the rest the residual.
    y = np.array([40.0, 41.0, 39.5, 44.0, 45.5, 44.5])
    teacher, run = np.repeat([0, 1], 3), np.arange(6)
    blocks = sections.variance_blocks(tmp_path, stream_runs(teacher, run, run, run, y), {}, ["A"], ["val_f1"])
    table = pd.read_csv(tmp_path / "tables" / "variance_components.csv").set_index("component")
    direct = variance_components(pd.DataFrame({"teacher": teacher, "val_f1": y}), ["teacher"], "val_f1",
                                 np.random.default_rng([0, sections.VARIANCE_TAG, 0, 0]))
    # By hand: teacher means 40.1667 and 44.6667, grand mean 42.4167: MS_teacher = 3 (2.25² + 2.25²) / 1 = 30.375;
    # within-teacher sums of squares 1.1667 each: MS_res = 2.3333 / 4 = 0.58333; s2_teacher = (30.375 - 0.58333) / 3.
    assert table.loc["teacher", "variance"] == pytest.approx(9.930556, rel=1e-5)
    assert table.loc["residual", "variance"] == pytest.approx(0.583333, rel=1e-5)
    assert table.loc["teacher", "variance"] == pytest.approx(direct.components[0].variance, rel=1e-5)
    assert table.loc["residual", "share_high"] == pytest.approx(direct.components[1].share_high, rel=1e-5)
    assert any("the init, order and augment streams, which change with every run" in b.text for b in blocks)


def test_nested_design_from_the_study_record(tmp_path):
    rng = np.random.default_rng(3)
    teacher, order = np.repeat([0, 1], 6), np.tile(np.repeat([0, 1, 2], 2), 2)
    y = 40 + 2 * rng.normal(size=2)[teacher] + rng.normal(size=(2, 3))[teacher, order] + 0.3 * rng.normal(size=12)
    runs = stream_runs(teacher, 0, order, np.arange(12), y)  # init fixed, augment changes with every run
    sections.variance_blocks(tmp_path, runs, {"streams_design": "nested"}, ["A"], ["val_f1"], seed=5)
    table = pd.read_csv(tmp_path / "tables" / "variance_components.csv").set_index("component")
    direct = variance_components(pd.DataFrame({"teacher": teacher, "order": order, "val_f1": y}), ["teacher", "order"],
                                 "val_f1", np.random.default_rng([5, sections.VARIANCE_TAG, 0, 0]), design="nested")
    assert list(table.index) == ["teacher", "order", "residual"] and set(table["design"]) == {"nested"}
    for c in direct.components:
        assert (table.loc[c.name, "variance"], table.loc[c.name, "share_low"]) == pytest.approx(
            (c.variance, c.share_low), rel=1e-5)


def test_an_unbalanced_design_is_said_not_estimated(tmp_path):
    init, order = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 0])  # cell (2, 1) missing
    blocks = sections.variance_blocks(tmp_path, stream_runs(0, init, order, np.arange(5), np.arange(5.0)), {},
                                      ["A"], ["val_f1"])
    assert blocks[0].text == "Where the variance comes from: seed streams"
    assert blocks[1].text.startswith("A (val F1): not estimated: the design over ['init', 'order'] is not fully "
                                     "crossed")


def test_sources_of_runs_made_elsewhere_are_not_claimed():
    harness_runs = pd.DataFrame({"variant": "A", "seed": [1, 2, 3], "bundle_key": "b1"})
    assert sections.sources_varied(harness_runs) == "seed (3): all streams; 1 teacher"
    elsewhere = harness_runs.drop(columns=["bundle_key"])  # `report --results`: the file's seeds only
    assert sections.sources_varied(elsewhere) == "seed (3); streams not recorded"
    assert "not known to the harness" in sections.randomness_note(elsewhere, ["A"])
