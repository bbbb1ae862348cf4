"""Shared stages: dataset -> features -> teacher -> pseudolabels, run once and cached by content hash.

The result of the stages is a *bundle*: a directory `<cache>/stages/<key>/` of memory-mappable arrays and a
`manifest.json` written last (its presence marks the bundle complete). Jobs get only the bundle's path, so
the same bundle serves local processes and Dask workers that share the file system, and every job maps the
same feature files instead of holding its own copy.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from harness.config import MethodConfig, config_hash, to_dict
from harness.constants import CLASSES, FRAME_HOP_SECONDS, SUBSETS
from harness.data.desed import Subset, load_dataset
from harness.data.encoder import LabelEncoder
from harness.data.synth import ensure_corpus
from harness.evaluation.metrics import event_based, segment_based
from harness.evaluation.postprocess import event_length_frames, median_windows, postprocess
from harness.features.cache import FeatureSet, extract, normalization
from harness.bundle import Bundle
from harness.study.plan import JobSpec, data_identity
from harness.teacher.cnn import predict_ensemble, train_ensemble
from harness.teacher.predictions import load_predictions

log = logging.getLogger("harness.stages")

TRAIN_SUBSETS = ("synthetic", "weak", "unlabeled")
EVAL_SUBSETS = ("validation", "test")


# --------------------------------------------------------------------------- building


def stage_root(cache_dir: Path, job: JobSpec, feature_keys: dict[str, str], label_digest: str) -> Path:
    c = job.config
    key = config_hash(data_identity(job.data), c.features, c.teacher, c.postprocess, c.eval, job.teacher_seed,
                      feature_keys, label_digest)
    return Path(cache_dir) / "stages" / key


def prepare(job: JobSpec, cache_dir: Path, jobs: int = 2) -> Path:
    """Run (or reuse) the shared stages a job needs; returns the bundle directory.

    Any job of the study can be passed: only its data, features, teacher and evaluation settings count.
    """
    cache_dir = Path(cache_dir)
    data = job.data
    if data.kind == "synthetic":
        ensure_corpus(Path(data.root), data.synth_size, data.synth_seed)
    subsets = load_dataset(data, Path(data.root))
    fcfg = job.config.features
    student = {name: _features(subsets[name], fcfg, fcfg.student_mels, cache_dir, jobs) for name in SUBSETS}
    label_digest = config_hash([[c.clip_id, c.events, sorted(c.weak or [])] for s in subsets.values()
                                for c in s.clips])
    root = stage_root(cache_dir, job, {k: v.key for k, v in student.items()}, label_digest)
    if (root / "manifest.json").exists():
        log.info("shared stages: cache hit %s", root)
        return root
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        manifest = _build(job, subsets, student, cache_dir, tmp, jobs)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if root.exists():  # a finished bundle written meanwhile by another process: keep that one
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _features(subset: Subset, fcfg, n_mels: int, cache_dir: Path, jobs: int) -> FeatureSet:
    clips = [(c.clip_id, c.path) for c in subset.clips]
    return extract(clips, fcfg, n_mels, cache_dir, subset.name, jobs=jobs)


def _build(job: JobSpec, subsets: dict[str, Subset], student: dict[str, FeatureSet], cache_dir: Path,
           out: Path, jobs: int) -> dict:
    config = job.config
    encoder = LabelEncoder(n_frames=config.features.n_frames, hop_seconds=config.features.hop_seconds)
    arrays: dict[str, str] = {}

    def save(name: str, value: np.ndarray) -> None:
        np.save(out / f"{name}.npy", value)
        arrays[name] = f"{name}.npy"

    strong = np.stack([encoder.encode_strong(c.events or ()) for c in subsets["synthetic"].clips]).astype(np.uint8)
    save("synthetic_strong", strong)
    save("synthetic_weak", strong.max(axis=2).astype(np.float32))
    save("weak_weak", np.stack([encoder.encode_weak(c.weak or ()) for c in subsets["weak"].clips]))
    for name in EVAL_SUBSETS:
        subsets[name].reference_events().to_csv(out / f"{name}_reference.tsv", sep="\t", index=False)
    synth_events = subsets["synthetic"].reference_events()
    lengths = {stat: event_length_frames(synth_events, stat, FRAME_HOP_SECONDS).tolist()
               for stat in ("median", "mean")}
    mean, std = normalization([student[n] for n in TRAIN_SUBSETS], cache_dir)
    teacher_arrays, teacher_scores = _teacher(job, subsets, cache_dir, out, jobs, lengths)
    for name, value in teacher_arrays.items():
        save(name, value)
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "data": to_dict(data_identity(job.data)),
        "features_config": to_dict(config.features),
        "teacher_config": to_dict(config.teacher),
        "teacher_seed": job.teacher_seed,
        "features": {k: str(v.path) for k, v in student.items()},
        "clip_ids": {k: list(v.clip_ids) for k, v in student.items()},
        "norm_mean": np.asarray(mean).tolist(),
        "norm_std": np.asarray(std).tolist(),
        "event_frames": lengths,
        "arrays": arrays,
        "teacher": teacher_scores,
    }


def _teacher(job: JobSpec, subsets: dict[str, Subset], cache_dir: Path, out: Path, jobs: int,
             lengths: dict[str, list[float]]) -> tuple[dict[str, np.ndarray], dict]:
    """Teacher predictions (weak [N,C], strong [N,C,T]) on U, validation and test, and its own F1."""
    tcfg = job.config.teacher
    ids = {n: [c.clip_id for c in subsets[n].clips] for n in ("unlabeled", *EVAL_SUBSETS)}
    if tcfg.source == "file":
        preds = {n: load_predictions(Path(tcfg.predictions), ids[n]) for n in ids}
        preds = {n: (strong, weak) for n, (weak, strong) in preds.items()}
        seconds = 0.0
    else:
        preds, seconds = _train_teacher(job, subsets, cache_dir, jobs)
    arrays = {}
    for n, (frame, clip) in preds.items():
        arrays[f"teacher_{n}_strong"] = np.asarray(frame, np.float32)
        arrays[f"teacher_{n}_weak"] = np.asarray(clip, np.float32)
    scores = {"train_seconds": round(seconds, 1), "source": tcfg.source}
    for n in EVAL_SUBSETS:
        scores[n] = _score_predictions(job.config, preds[n][0], preds[n][1], ids[n], subsets[n],
                                       np.asarray(lengths[job.config.postprocess.window_statistic]))
    log.info("teacher: validation F1 %.1f %%, test F1 %.1f %%", scores["validation"]["event_f1"],
             scores["test"]["event_f1"])
    return arrays, scores


def _train_teacher(job: JobSpec, subsets: dict[str, Subset], cache_dir: Path, jobs: int):
    fcfg = job.config.features
    teacher_feats = {n: _features(subsets[n], fcfg, fcfg.teacher_mels, cache_dir, jobs) for n in SUBSETS}
    mean, std = normalization([teacher_feats[n] for n in TRAIN_SUBSETS], cache_dir)
    norm = lambda x: ((np.asarray(x, np.float32) - mean) / std).astype(np.float32)  # noqa: E731
    encoder = LabelEncoder(n_frames=fcfg.n_frames, hop_seconds=fcfg.hop_seconds)
    strong_y = np.stack([encoder.encode_strong(c.events or ()) for c in subsets["synthetic"].clips])
    weak_y = np.stack([encoder.encode_weak(c.weak or ()) for c in subsets["weak"].clips])
    device = resolve_device(job.config.train.device)
    start = time.perf_counter()
    log.info("teacher: training %d CNNs on %d strong + %d weak clips (%s)", job.config.teacher.n_models,
             len(strong_y), len(weak_y), device)
    models = train_ensemble(norm(teacher_feats["synthetic"].features), strong_y,
                            norm(teacher_feats["weak"].features), weak_y, job.config.teacher,
                            seed=job.teacher_seed, device=device, on_epoch=_log_teacher_epoch)
    preds = {n: predict_ensemble(models, norm(teacher_feats[n].features), device=device)
             for n in ("unlabeled", *EVAL_SUBSETS)}
    return preds, time.perf_counter() - start


def _log_teacher_epoch(member: int, epoch: int, loss: float) -> None:
    log.info("teacher: member %d epoch %d: loss %.4f", member + 1, epoch, loss)


def _score_predictions(config: MethodConfig, frame: np.ndarray, clip: np.ndarray, clip_ids: list[str],
                       subset: Subset, lengths: np.ndarray) -> dict:
    windows = median_windows(lengths, config.postprocess.window_fraction)
    events = postprocess(frame, clip, clip_ids, windows, config.postprocess, config.student.gate_threshold)
    ref = subset.reference_events()
    ev = event_based(ref, events, clip_ids, config.eval.t_collar, config.eval.percentage_of_length,
                     config.eval.evaluator)
    seg = segment_based(ref, events, clip_ids, config.eval.segment_seconds, config.eval.evaluator)
    return {"event_f1": 100 * ev.macro_f1, "segment_f1": 100 * seg.macro_f1,
            "per_class": {c: 100 * ev.per_class_f1[c] for c in CLASSES}}


def resolve_device(name: str) -> torch.device:
    """"auto" -> the first CUDA device when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
