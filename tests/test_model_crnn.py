"""The CRNN student (DCASE baseline) and the model registry: shapes, ranges, size against torch and by hand,
`student.model` in configs and overrides, and LSTM identities unchanged by the registry."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from harness import identity, plugins
from harness.config import CRNNConfig, MethodConfig, StudentConfig, check_method, from_mapping
from harness.errors import ConfigError
from harness.model.crnn import CRNN, crnn_size, layout
from harness.study.spec import split_overrides

SMALL = CRNNConfig(cnn_channels=16, rnn_hidden=8)  # the baseline's layout, narrow: fast on a CPU


@pytest.mark.parametrize("n_frames", [1, 3, 250, 251, 253])  # P = 4: T not a multiple of it, and T < P
@pytest.mark.parametrize("attention", ["time", "classes"])
def test_output_shapes_and_ranges_for_any_number_of_frames(n_frames, attention):
    torch.manual_seed(0)
    model = CRNN(20, CRNNConfig(cnn_channels=16, rnn_hidden=8, attention=attention), n_classes=10).eval()
    frame, clip = model(torch.randn(3, n_frames, 20) * 3)
    assert frame.shape == (3, 10, n_frames) and clip.shape == (3, 10)
    assert frame.dtype == clip.dtype == torch.float32
    for out in (frame, clip):
        assert torch.all((out >= 0) & (out <= 1))
    # The clip output is a weighted average over time of the frames the model returns.
    assert torch.all(clip >= frame.min(dim=2).values - 1e-6)
    assert torch.all(clip <= frame.max(dim=2).values + 1e-6)


def test_frame_outputs_are_the_pooled_outputs_repeated_at_the_study_hop():
    torch.manual_seed(0)
    model = CRNN(20, SMALL).eval()
    frame, _ = model(torch.randn(2, 250, 20))
    # P = 2 x 2 = 4: frames 4k .. 4k + 3 share one GRU output; 250 = 62 x 4 + 2, the last group has 2 frames.
    groups = frame[..., :248].reshape(2, 10, 62, 4)
    assert torch.equal(groups, groups[..., :1].expand_as(groups))
    assert torch.equal(frame[..., 248], frame[..., 249])
    assert not torch.equal(frame[..., 247], frame[..., 248])


def test_outputs_are_float32_under_bf16_autocast():
    torch.manual_seed(0)
    model = CRNN(20, SMALL).eval()
    x = torch.randn(2, 60, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        frame, clip = model(x)
    plain_frame, _ = model(x)
    assert frame.dtype == clip.dtype == torch.float32
    assert torch.allclose(frame, plain_frame, atol=0.05)  # bf16 convs and GRU: close, not equal


def test_baseline_layout_at_its_128_bins_and_at_the_students_20():
    baseline = layout(CRNNConfig(), 128)
    assert [b.c_out for b in baseline] == [16, 32, 64, 128, 128, 128, 128]  # DESED_task's nb_filters
    assert [b.bins for b in baseline] == [128, 64, 32, 16, 8, 4, 2]  # halved in each of the 7 blocks, to 1
    assert [b.time_pool for b in baseline] == [2, 2, 1, 1, 1, 1, 1]
    student = layout(CRNNConfig(), 20)
    assert [b.bins for b in student] == [20, 10, 5, 2, 1, 1, 1]
    assert [b.freq_pool for b in student] == [2, 2, 2, 2, 1, 1, 1]


@pytest.mark.parametrize("mels, cfg", [
    (20, CRNNConfig()),  # the default student
    (128, CRNNConfig()),  # the baseline's own input
    (20, CRNNConfig(cnn_channels=64, activation="relu", rnn_layers=1)),
    (64, CRNNConfig(cnn_layers=3, time_pooling=(2, 1, 3), rnn_hidden=16)),  # 64 bins -> 8: GRU input 128 x 8
    (5, CRNNConfig(cnn_channels=4, cnn_layers=2, time_pooling=(), rnn_hidden=3)),
])
def test_parameter_count_is_torchs(mels, cfg):
    model = CRNN(mels, cfg, n_classes=7)
    size = crnn_size(cfg, mels, 7, 500)
    assert size.params == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_default_student_size():
    size = crnn_size(CRNNConfig(), 20, 10, 500)
    assert size.params == 1_112_420  # = sum(p.numel()) of the built default (test above)
    assert size.macs_per_clip == 178_213_000
    assert size.macs_per_frame == round(178_213_000 / 500)


def test_macs_by_hand():
    # F = 4 bins, T = 5 frames, C = 2; blocks of 2 and 4 channels (16 / 2^3, 16 / 2^2), time pooled by 2 in
    # block 0: the input is padded to 6 frames. Block 0: 6 x 4 positions, 1 -> 2 channels; block 1: 3 x 2
    # positions, 2 -> 4 channels; GRU input 4 channels x 1 bin, h = 3, 3 pooled frames.
    cfg = CRNNConfig(cnn_channels=16, cnn_layers=2, time_pooling=(2,), rnn_hidden=3, rnn_layers=1)
    size = crnn_size(cfg, n_mels=4, n_classes=2, n_frames=5)
    conv0, glu0 = 9 * 1 * 2 * 6 * 4, 2 * 2 * 6 * 4  # 432, 96
    conv1, glu1 = 9 * 2 * 4 * 3 * 2, 4 * 4 * 3 * 2  # 432, 96
    gru = 2 * 3 * 3 * (4 + 3) * 3  # 2 directions x 3 gates x h (in + h) x 3 steps = 378
    heads = 2 * (2 * 3) * 2 * 3  # 72
    pooling = 2 * 5  # C x T
    assert size.macs_per_clip == conv0 + glu0 + conv1 + glu1 + gru + heads + pooling == 1516
    # conv (w + b) + batch norm + GLU (w + b): block 0: 18 + 2 + 4 + 6; block 1: 72 + 4 + 8 + 20;
    # GRU: 2 x (3 x 3 x (4 + 3) + 6 x 3); heads: 2 x (6 x 2 + 2)
    assert size.params == (18 + 2 + 4 + 6) + (72 + 4 + 8 + 20) + 2 * (63 + 18) + 2 * 14 == 324


@pytest.mark.parametrize("mels, cfg, n_frames", [(20, CRNNConfig(), 250), (20, SMALL, 501),
                                                 (64, CRNNConfig(cnn_layers=3, time_pooling=(2, 1, 3)), 100)])
def test_macs_equal_a_count_from_the_built_modules_tensors(mels, cfg, n_frames):
    """MACs counted independently, from the shapes the modules see in one forward pass."""
    model = CRNN(mels, cfg, n_classes=10).eval()
    counts = []

    def conv(module, inputs, output):
        counts.append(output[0].numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1])

    def linear(module, inputs, output):
        counts.append(output[0].numel() * module.in_features)

    def gru(module, inputs, output):
        steps, h = inputs[0].shape[1], module.hidden_size
        for layer in range(module.num_layers):
            n_in = module.input_size if layer == 0 else 2 * h
            counts.append(2 * 3 * h * (n_in + h) * steps)

    for m in model.modules():
        hook = {nn.Conv2d: conv, nn.Linear: linear, nn.GRU: gru}.get(type(m))
        if hook:
            m.register_forward_hook(hook)
    model(torch.randn(1, n_frames, mels))
    pooling = 10 * n_frames
    assert sum(counts) + pooling == crnn_size(cfg, mels, 10, n_frames).macs_per_clip


def test_the_registry_builds_and_sizes_both_students():
    assert plugins.models.names()[:2] == ("lstm", "crnn")
    for name, cfg in (("lstm", StudentConfig(hidden=8)), ("crnn", SMALL)):
        spec = plugins.models.get(name)
        assert isinstance(cfg, spec.config) and cfg.model == name
        model = spec.build(cfg, 20, 10)
        frame, clip = model(torch.randn(2, 30, 20))
        assert frame.shape == (2, 10, 30) and clip.shape == (2, 10)
        assert spec.size(cfg, 20, 10, 30).params == sum(p.numel() for p in model.parameters())


def test_reading_the_registry_and_configs_imports_no_torch():
    code = ("import sys; from harness import plugins; from harness.config import MethodConfig, check_method, "
            "from_mapping; c = from_mapping(MethodConfig, {'student': {'model': 'crnn'}}, 'x'); "
            "check_method(c, 'x'); plugins.models.get('crnn'); assert 'torch' not in sys.modules, 'torch'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --------------------------------------------------------------------------- student.model in configs


def test_set_model_then_its_keys():
    method, _, _ = split_overrides(["student.model=crnn", "student.cnn_channels=64", "student.gate_threshold=0.3"])
    config = from_mapping(MethodConfig, method, "--set")
    assert config.student == CRNNConfig(cnn_channels=64, gate_threshold=0.3)


def test_model_is_read_before_the_other_keys_of_its_section():
    # cnn_channels comes first in the table; it is still checked against the CRNN named after it
    config = from_mapping(MethodConfig, {"student": {"cnn_channels": 32, "model": "crnn"}}, "x")
    assert config.student == CRNNConfig(cnn_channels=32)
    # naming the model a section already has keeps its values; naming another starts from its defaults
    lstm = from_mapping(MethodConfig, {"student": {"hidden": 32}}, "x")
    assert from_mapping(MethodConfig, {"student": {"model": "lstm"}}, "x", lstm).student.hidden == 32
    back = from_mapping(MethodConfig, {"student": {"model": "lstm"}}, "x", config)
    assert back.student == StudentConfig()


def test_a_typo_lists_the_keys_of_the_chosen_model():
    with pytest.raises(ConfigError) as e:
        split_overrides(["student.model=crnn", "student.cnn_chanels=64"])
    message = str(e.value)
    assert "cnn_chanels" in message and "model 'crnn'" in message
    for key in ("cnn_channels", "cnn_layers", "time_pooling", "rnn_hidden", "rnn_layers", "dropout",
                "gate_threshold"):
        assert key in message
    assert "hidden," not in message.split("valid keys")[1].replace("rnn_hidden,", "")  # not the LSTM's keys


def test_an_lstm_key_on_the_crnn_and_a_crnn_key_on_the_lstm_are_refused_naming_the_model():
    with pytest.raises(ConfigError, match=r"'cnn_channels'.*model 'lstm'.*also crnn"):
        split_overrides(["student.cnn_channels=64"])
    with pytest.raises(ConfigError, match=r"'hidden'.*model 'crnn'"):
        split_overrides(["student.model=crnn", "student.hidden=64"])


def test_an_unknown_model_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"student\.model: unknown model 'nope'; known models: lstm, crnn"):
        split_overrides(["student.model=nope"])


def test_crnn_keys_are_range_checked_and_checked_together():
    for text, key in (("student.cnn_channels=0", "student.cnn_channels"), ("student.dropout=1.0", "student.dropout"),
                      ("student.time_pooling=[2, 0]", "student.time_pooling")):
        config = from_mapping(MethodConfig, split_overrides(["student.model=crnn", text])[0], "x")
        with pytest.raises(ConfigError, match=key):
            check_method(config, "x")
    config = from_mapping(MethodConfig, {"student": {"model": "crnn", "cnn_layers": 1}}, "x")
    with pytest.raises(ConfigError, match=r"student.time_pooling has 2 factors but student.cnn_layers = 1"):
        check_method(config, "x")


# --------------------------------------------------------------------------- identities


def test_the_lstm_identity_is_the_one_before_models_were_chosen():
    # The default MethodConfig's student section as it was hashed before `student.model` existed.
    assert identity.method_identity(MethodConfig())["student"] == {
        "hidden": 256, "layers": 3, "attention": "time", "gate_threshold": 0.5}
    # Computed at the commit before this change (4feb3cc) with
    # identity.job_id(MethodConfig(), 0, "b" * 16) and identity.config_key(MethodConfig()).
    assert identity.job_id(MethodConfig(), 0, "b" * 16) == "ef8d19eb5d3e"
    assert identity.config_key(MethodConfig()) == "7b447ad6fbf0"


def test_a_crnn_job_has_its_own_identity():
    crnn = from_mapping(MethodConfig, {"student": {"model": "crnn"}}, "x")
    assert identity.method_identity(crnn)["student"]["model"] == "crnn"
    assert identity.job_id(crnn, 0, "b" * 16) != identity.job_id(MethodConfig(), 0, "b" * 16)


def test_a_crnn_base_keeps_its_defaults_under_a_profile_that_sizes_the_lstm(tmp_path):
    from harness.study.plan import resolve, variant_config
    from harness.study.spec import parse_study

    raw = {"base": {"student": {"model": "crnn", "rnn_hidden": 64}},
           "variant": [{"name": "A"}, {"name": "B", "set": {"student.cnn_channels": 32}},
                       {"name": "L", "set": {"student.model": "lstm"}}]}
    study = resolve(parse_study(raw, tmp_path / "s.toml"), "quick", tmp_path)  # quick sets student.hidden = 32
    assert study.base.student == CRNNConfig(rnn_hidden=64)
    configs = {v.name: variant_config(study, v).student for v in study.spec.variants}
    assert configs["B"] == CRNNConfig(rnn_hidden=64, cnn_channels=32)
    assert configs["L"] == StudentConfig()  # another model: its own defaults, not the profile's LSTM size


def test_a_variant_s_student_key_that_no_model_has_is_refused_when_the_file_is_read(tmp_path):
    from harness.study.spec import parse_study

    raw = {"variant": [{"name": "A", "set": {"student.cnn_chanels": 32}}]}
    with pytest.raises(ConfigError, match=r"variant\[0\]\.set\.student: unknown key 'cnn_chanels'"):
        parse_study(raw, tmp_path / "s.toml")
    raw = {"variant": [{"name": "A", "set": {"student.model": "crnn", "student.hidden": 32}}]}
    with pytest.raises(ConfigError, match=r"'hidden'; valid keys of model 'crnn'"):
        parse_study(raw, tmp_path / "s.toml")
