"""Any config key as a factor: parsing, naming, levels, descriptions and generated comparisons (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import MethodConfig, with_factors
from harness.errors import ConfigError
from harness.study.spec import load_study, parse_study, variant_name


def study(tmp_path: Path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return load_study(path)


def test_paper_names_are_unchanged_and_other_keys_are_named_key_equals_level(tmp_path):
    s = study(tmp_path, '[grid]\nmasking = ["event", "none"]\n"loss.lambda1" = [0.5, 1]\n')
    assert [v.name for v in s.variants] == ["EM+loss.lambda1=0.5", "EM+loss.lambda1=1.0",
                                            "NM+loss.lambda1=0.5", "NM+loss.lambda1=1.0"]
    # a float key's level is the config's value: 1 and 1.0 are one level
    assert s.variants[1].factor_dict == {"masking": "event", "loss.lambda1": 1.0}
    assert list(s.factor_specs) == ["masking", "loss.lambda1"]
    assert variant_name({"curriculum": "easier", "pseudolabels": "strong+weak", "masking": "event",
                         "augmentation": "custom"}) == "EF+SW+EM+CS"


def test_a_paper_factor_given_by_its_key_is_the_same_factor(tmp_path):
    s = study(tmp_path, '[[variant]]\n"loss.masking" = "segment"\n\n[[variant]]\nmasking = "none"\n')
    assert [v.name for v in s.variants] == ["SM", "NM"]
    assert [v.factors for v in s.variants] == [(("masking", "segment"),), (("masking", "none"),)]
    with pytest.raises(ConfigError, match="given twice"):
        study(tmp_path, '[[variant]]\n"loss.masking" = "segment"\nmasking = "none"\n')


def test_factor_descriptions_name_variants_and_label_levels(tmp_path):
    s = study(tmp_path, '[grid]\n"student.hidden" = [64, 256]\n\n[factor."student.hidden"]\nlabel = "Hidden units"\n'
                        'abbreviations = { 64 = "H64", 256 = "H256" }\nlevel_labels = { 64 = "64 units" }\n')
    assert [v.name for v in s.variants] == ["H64", "H256"]
    spec = s.factor_specs["student.hidden"]
    assert spec.label == "Hidden units" and spec.display(64) == "64 units" and spec.display(256) == "256"
    # unquoted dotted keys are nested TOML tables: the same factor
    s2 = study(tmp_path, '[grid]\nstudent.hidden = [64, 256]\n\n[factor.student.hidden]\nlabel = "Hidden units"\n')
    assert [v.name for v in s2.variants] == ["student.hidden=64", "student.hidden=256"]
    assert s2.factor_specs["student.hidden"].label == "Hidden units"


@pytest.mark.parametrize("text, expected", [
    ('[grid]\n"student.hiden" = [1, 2]\n', "student has no 'hiden'; valid keys: "),
    ('[grid]\n"student.hidden" = ["big"]\n', "expected int, got str 'big'"),
    ('[grid]\n"train.device" = ["cpu", "cuda"]\n', "'train.device' cannot be a factor"),
    ('[grid]\nhidden = [1, 2]\n', "unknown key 'hidden': a factor is one of curriculum"),
    ('[grid]\n"student" = [1]\n', "unknown key 'student': a factor is one of"),
    ('[grid]\nmasking = ["events"]\n', "unknown level 'events'; valid levels: event, segment, none"),
    ('[[variant]]\nname = "a"\n\n[factor."student.hidden"]\nlabel = 3\n', "label: expected a string"),
    ('[[variant]]\nname = "a"\n\n[factor."student.hidden"]\nabbrev = {}\n', "unknown key 'abbrev'"),
])
def test_bad_factors_name_the_file_and_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as error:
        study(tmp_path, text)
    assert "s.toml" in str(error.value) and expected in str(error.value), str(error.value)


def test_with_factors_sets_any_key_and_checks_like_set():
    config = with_factors(MethodConfig(), {"student.hidden": 64, "masking": "segment", "train.lr": 0.01})
    assert (config.student.hidden, config.loss.masking, config.train.lr) == (64, "segment", 0.01)
    assert with_factors(MethodConfig(), {}) == MethodConfig()


def test_generated_comparisons_pair_variants_that_differ_in_that_factor_alone(tmp_path):
    s = study(tmp_path, '[grid]\n"student.hidden" = [64, 128, 256]\nmasking = ["event", "none"]\n\n'
                        '[[comparison]]\na = "EM+student.hidden=64"\nb = "EM+student.hidden=256"\n\n'
                        '[[comparisons]]\nfactor = "student.hidden"\nagainst = 256\nrope = 0.5\n\n'
                        '[[comparisons]]\nfactor = "masking"\npairs = "all"\n')
    pairs = [(c.a, c.b) for c in s.comparisons]
    assert pairs == [
        ("EM+student.hidden=64", "EM+student.hidden=256"),  # written: kept first, not repeated
        ("EM+student.hidden=128", "EM+student.hidden=256"),
        ("NM+student.hidden=64", "NM+student.hidden=256"), ("NM+student.hidden=128", "NM+student.hidden=256"),
        ("EM+student.hidden=64", "NM+student.hidden=64"), ("EM+student.hidden=128", "NM+student.hidden=128"),
        ("EM+student.hidden=256", "NM+student.hidden=256"),
    ]
    assert s.comparisons[1].label == "student.hidden 128 vs 256 (EM)" and s.comparisons[1].rope == 0.5
    assert s.comparisons[4].label == "Masking Event vs None (student.hidden=64)"


def test_variants_with_other_settings_are_not_compared(tmp_path):
    s = study(tmp_path, '[[variant]]\nname = "a"\n"student.hidden" = 64\n\n[[variant]]\nname = "b"\n'
                        '"student.hidden" = 256\nset = { "train.lr" = 0.01 }\n\n[[variant]]\nname = "c"\n'
                        '"student.hidden" = 256\n\n[[comparisons]]\nfactor = "student.hidden"\nagainst = 256\n')
    assert [(c.a, c.b) for c in s.comparisons] == [("a", "c")]
    with pytest.raises(ConfigError, match="no two variants differ in 'student.hidden' alone"):
        study(tmp_path, '[[variant]]\nname = "a"\n"student.hidden" = 64\n\n[[variant]]\nname = "b"\n'
                        '"student.hidden" = 256\nset = { "train.lr" = 0.01 }\n\n'
                        '[[comparisons]]\nfactor = "student.hidden"\nagainst = 256\n')


def test_the_paper_studies_parse_to_the_same_variants_as_before():
    # The committed ablation files name their variants as the paper does and vary the paper's four only.
    for path in sorted(Path("ablations").glob("table*.toml")):
        s = load_study(path)
        assert set(s.factor_specs) <= {"curriculum", "pseudolabels", "masking", "augmentation"}, path
        for v in s.variants:
            assert all(isinstance(level, str) for _, level in v.factors)
    parse_study({"variant": [{"name": "base"}]}, Path("x.toml"))  # a study without factors still parses


def test_the_student_model_is_a_factor_and_its_keys_follow_it(tmp_path):
    from harness.config import CRNNConfig, StudentConfig
    from harness.study.plan import resolve, variant_config

    s = study(tmp_path, '[grid]\n"student.model" = ["lstm", "crnn"]\n\n[factor."student.model"]\n'
                        'abbreviations = { lstm = "LSTM", crnn = "CRNN" }\n\n'
                        '[[variant]]\nname = "narrow-crnn"\n"student.model" = "crnn"\n"student.cnn_channels" = 64\n\n'
                        '[[comparisons]]\nfactor = "student.model"\nagainst = "lstm"\n')
    assert [v.name for v in s.variants] == ["narrow-crnn", "LSTM", "CRNN"]
    resolved = resolve(s, "tiny", tmp_path)
    configs = {v.name: variant_config(resolved, v).student for v in s.variants}
    assert type(configs["LSTM"]) is StudentConfig and type(configs["CRNN"]) is CRNNConfig
    assert configs["narrow-crnn"].cnn_channels == 64 and configs["CRNN"].cnn_channels == CRNNConfig().cnn_channels
    assert [(c.a, c.b) for c in s.comparisons] == [("CRNN", "LSTM")]  # narrow-crnn also differs in channels
    with pytest.raises(ConfigError, match="cnn_channels"):  # a CRNN key on the LSTM names the model's keys
        study(tmp_path, '[[variant]]\nname = "x"\n"student.cnn_channels" = 64\n')
