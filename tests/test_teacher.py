"""Teacher CNN ensemble (tiny, on random data) and the teacher predictions file."""

import dataclasses

import numpy as np
import pytest
import torch

from harness.config import TeacherConfig
from harness.constants import CLASSES, N_CLASSES, N_FRAMES
from harness.errors import ConfigError, DataError, TrainingDiverged
from harness.teacher.cnn import TeacherCNN, predict_ensemble, train_ensemble
from harness.teacher.predictions import load_predictions, save_predictions

TINY = TeacherConfig(n_models=2, channels=8, epochs=2, batch_size=4, lr=1e-3)
CPU = torch.device("cpu")


def _labeled(n_frames=64, n_bins=64, seed=0):
    rng = np.random.default_rng(seed)
    strong_x = rng.standard_normal((6, n_frames, n_bins)).astype(np.float32)
    strong_y = (rng.random((6, N_CLASSES, n_frames)) < 0.2).astype(np.float32)
    weak_x = rng.standard_normal((5, n_frames, n_bins)).astype(np.float32)
    weak_y = (rng.random((5, N_CLASSES)) < 0.3).astype(np.float32)
    return strong_x, strong_y, weak_x, weak_y


def test_teacher_cnn_forward_contract():
    torch.manual_seed(0)
    frame, clip = TeacherCNN(64, 8)(torch.randn(2, N_FRAMES, 64))
    assert frame.shape == (2, N_CLASSES, N_FRAMES) and clip.shape == (2, N_CLASSES)
    assert torch.all((frame >= 0) & (frame <= 1)) and torch.all((clip >= 0) & (clip <= 1))


def test_tiny_ensemble_trains_and_predicts_the_mean_of_members():
    strong_x, strong_y, weak_x, weak_y = _labeled()
    log = []
    models = train_ensemble(strong_x, strong_y, weak_x, weak_y, TINY, seed=3, device=CPU,
                            on_epoch=lambda m, e, loss: log.append((m, e, loss)))
    assert len(models) == 2 and not any(m.training for m in models)
    assert [(m, e) for m, e, _ in log] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert all(np.isfinite(loss) and loss > 0 for _, _, loss in log)
    x = np.concatenate([strong_x, weak_x])
    frame, clip = predict_ensemble(models, x, batch_size=4, device=CPU)
    assert frame.dtype == np.float32 and frame.shape == (11, N_CLASSES, 64) and clip.shape == (11, N_CLASSES)
    with torch.no_grad():
        outputs = [m(torch.from_numpy(x)) for m in models]
    assert np.allclose(frame, np.mean([f.numpy() for f, _ in outputs], axis=0), atol=1e-6)
    assert np.allclose(clip, np.mean([c.numpy() for _, c in outputs], axis=0), atol=1e-6)
    assert not np.allclose(outputs[0][1].numpy(), outputs[1][1].numpy())  # members differ


def test_same_seed_same_teacher_and_global_rng_untouched():
    data = _labeled()
    cfg = dataclasses.replace(TINY, n_models=1, epochs=1)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = train_ensemble(*data, cfg, seed=5, device=CPU)
    after = torch.rand(1)
    b = train_ensemble(*data, cfg, seed=5, device=CPU)
    assert torch.equal(before, after)  # training forks the global RNG
    x = data[0]
    assert np.array_equal(predict_ensemble(a, x)[1], predict_ensemble(b, x)[1])


def test_nan_features_raise_training_diverged_naming_the_member():
    strong_x, strong_y, weak_x, weak_y = _labeled()
    strong_x[:] = np.nan
    weak_x[:] = np.nan
    with pytest.raises(TrainingDiverged, match="teacher member 0: loss term clip BCE is nan at epoch 1"):
        train_ensemble(strong_x, strong_y, weak_x, weak_y, TINY, seed=0, device=CPU)


# ---------------------------------------------------------------- predictions file


def _predictions(n=4, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"clip_{i}.wav" for i in range(n)]
    return ids, rng.random((n, N_CLASSES)).astype(np.float32), rng.random((n, N_CLASSES, N_FRAMES)).astype(np.float32)


def test_predictions_round_trip_and_reorder(tmp_path):
    ids, weak, strong = _predictions()
    path = tmp_path / "teacher.npz"
    save_predictions(path, ids, weak, strong)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher.npz"]  # no temporary file left
    w, s = load_predictions(path, None)
    assert np.array_equal(w, weak) and np.array_equal(s, strong)
    w, s = load_predictions(path, ["clip_2.wav", "clip_0.wav"])
    assert np.array_equal(w, weak[[2, 0]]) and np.array_equal(s, strong[[2, 0]])


def _write(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def test_missing_needed_clips_are_counted_and_named(tmp_path):
    ids, weak, strong = _predictions()
    save_predictions(tmp_path / "t.npz", ids, weak, strong)
    with pytest.raises(DataError, match=r"t.npz: 2 of 3 needed clips are absent, e.g. \['x.wav', 'y.wav'\]"):
        load_predictions(tmp_path / "t.npz", ["clip_1.wav", "x.wav", "y.wav"])


def test_missing_file_and_missing_key(tmp_path):
    with pytest.raises(DataError, match="nope.npz does not exist"):
        load_predictions(tmp_path / "nope.npz")
    ids, weak, _ = _predictions()
    path = _write(tmp_path / "t.npz", clip_ids=np.array(ids), weak=weak)
    with pytest.raises(DataError, match="t.npz: missing key.s. strong"):
        load_predictions(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda w, s: (w[:, :9], s), r"weak has shape \(4, 9\), expected \(4, 10\)"),
        (lambda w, s: (w, s[:, :, :499]), r"strong has shape \(4, 10, 499\), expected \(4, 10, 500\)"),
        (lambda w, s: (w + 1.5, s), r"weak has 40 value\(s\) that are NaN or outside \[0, 1\]"),
        (lambda w, s: (w, np.where(np.arange(500) == 7, np.nan, s).astype(np.float32)), "strong has 40 value"),
    ],
)
def test_wrong_shapes_and_values_are_rejected(tmp_path, change, message):
    ids, weak, strong = _predictions()
    weak, strong = change(weak, strong)
    path = _write(tmp_path / "bad.npz", clip_ids=np.array(ids), weak=weak, strong=strong)
    with pytest.raises(DataError, match="bad.npz: " + message):
        load_predictions(path)


def test_classes_mismatch_duplicates_and_object_arrays(tmp_path):
    ids, weak, strong = _predictions()
    path = _write(tmp_path / "c.npz", clip_ids=np.array(ids), weak=weak, strong=strong, classes=np.array(CLASSES[::-1]))
    with pytest.raises(DataError, match="c.npz: classes .* differ from the harness order"):
        load_predictions(path)
    dup = ids[:3] + ids[:1]
    path = _write(tmp_path / "d.npz", clip_ids=np.array(dup), weak=weak, strong=strong)
    with pytest.raises(DataError, match=r"d.npz: clip_ids has duplicates, e.g. \['clip_0.wav'\]"):
        load_predictions(path)
    path = _write(tmp_path / "o.npz", clip_ids=np.array(ids, dtype=object), weak=weak, strong=strong)
    with pytest.raises(DataError, match="o.npz holds an object array"):
        load_predictions(path)
    with pytest.raises(DataError, match="weak has shape"):
        save_predictions(tmp_path / "s.npz", ids, weak[:, :3], strong)


def test_teacher_cnn_rejects_too_few_mel_bins():
    with pytest.raises(ConfigError, match="at least 8 mel bins, got 4"):
        TeacherCNN(4, 8)
