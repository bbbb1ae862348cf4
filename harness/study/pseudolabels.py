"""How good the teacher's pseudolabels are, on the unlabeled clips whose truth is known (issue 28).

Scored is what the student is given (harness.method.train.Pool, losses, masks): the teacher's raw frame and
clip probabilities t^s [N, C, T] and t^w [N, C], soft targets that no median filter or gate touches. The only
binarisation the student's targets see is loss.presence_threshold (θ), in the masks:

- strong: a frame is active where t^s >= θ (the segment mask's rule); under event masking the frame targets of
  a class count only where t^w >= θ (the event mask), so there the class's frames are active only in clips
  with t^w >= θ (`gated`). Active runs are cut into events on each clip's real frames, and scored against
  the truth with the students' event-based and segment-based F1 (harness.evaluation.metrics, eval settings
  of the run);
- weak: the clip-level F1 of t^w >= θ against the classes of the truth's events (sed_eval's class-wise rules, as
  the event F1: a class absent from the truth drops out), and the ROC AUC of t^w, macro over the classes with
  both positive and negative clips.

The numbers are cached beside the bundle per setting and truth file, like the teacher's own scores
(harness.study.stages.teacher_scores), and recorded in study.json, so a report needs neither the bundle nor
the truth (a read-only or moved run folder keeps its table).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from harness import identity
from harness.bundle import MANIFEST, Bundle
from harness.config import MethodConfig
from harness.data.desed import REFERENCE_COLUMNS, read_strong_tsv, unlabeled_truth
from harness.errors import DataError
from harness.evaluation.metrics import event_based, macro_f1_from_counts, segment_based
from harness.evaluation.postprocess import to_events
from harness.records import PseudolabelRow, RecordError, read_json, write_json
from harness.study.plan import JobSpec
from harness.study.stages import DataState, teacher_scores

log = logging.getLogger("harness.pseudolabels")


@dataclass(frozen=True)
class TargetSetting:
    """What turns the teacher's probabilities into the student's effective targets."""

    presence_threshold: float  # loss.presence_threshold
    gated: bool  # event masking: frame targets count only on the classes with t^w >= presence_threshold

    @classmethod
    def of(cls, config: MethodConfig) -> "TargetSetting":
        return cls(config.loss.presence_threshold, config.loss.masking == "event")


@dataclass(frozen=True)
class Truth:
    """The true events of the unlabeled clips a truth TSV lists (clips without events included)."""

    path: Path
    events: pd.DataFrame  # filename, onset, offset, event_label
    clip_ids: tuple[str, ...]  # every clip it lists, in order

    @classmethod
    def read(cls, path: Path, classes: Sequence[str]) -> "Truth":
        listed = read_strong_tsv(path, classes)
        rows = [(clip, ev.onset, ev.offset, ev.label) for clip, events in listed.items() for ev in events]
        events = pd.DataFrame(rows, columns=list(REFERENCE_COLUMNS)).astype({"onset": float, "offset": float})
        return cls(path=path, events=events, clip_ids=tuple(listed))

    def present(self, clip_ids: Sequence[str], classes: Sequence[str]) -> np.ndarray:
        """[N, C] bool: whether the truth has an event of class c in clip n."""
        out = np.zeros((len(clip_ids), len(classes)), bool)
        row, col = pd.Index(list(clip_ids)), pd.Index(list(classes))
        i, j = row.get_indexer(self.events["filename"]), col.get_indexer(self.events["event_label"])
        keep = i >= 0
        out[i[keep], j[keep]] = True
        return out


def strong_pseudolabels(strong: np.ndarray, weak: np.ndarray, clip_ids: Sequence[str], setting: TargetSetting,
                        hop_seconds: float, classes: Sequence[str], durations: Sequence[float]) -> pd.DataFrame:
    """The strong pseudolabels as events (filename, onset, offset, event_label): the runs of frames with
    t^s >= θ (and t^w >= θ when gated), on each clip's real frames."""
    active = np.asarray(strong) >= setting.presence_threshold  # >=, as the masks binarise (not postprocess's >)
    if setting.gated:
        active &= (np.asarray(weak) >= setting.presence_threshold)[:, :, None]
    return to_events(active, clip_ids, hop_seconds, classes, durations=durations)


def weak_clip_f1(weak: np.ndarray, present: np.ndarray, threshold: float) -> float:
    """Macro clip-level F1 (fraction) of t^w >= threshold against the truth's classes per clip, by sed_eval's
    class-wise rules (zero_score; a class without a true clip drops out)."""
    predicted = np.asarray(weak) >= threshold
    counts = np.stack([present.sum(0), predicted.sum(0), (predicted & present).sum(0)], axis=-1)  # [C, 3]
    return float(macro_f1_from_counts(counts, zero_score=True))


def weak_auc(weak: np.ndarray, present: np.ndarray) -> float | None:
    """Macro ROC AUC of t^w over the classes with both a positive and a negative clip (None: no such class).

    Per class, the Mann-Whitney form: the share of (positive, negative) clip pairs the probabilities order
    right, ties counted half (average ranks)."""
    aucs = []
    for c in range(present.shape[1]):
        positive = present[:, c]
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if n_pos and n_neg:
            ranks = rankdata(np.asarray(weak)[:, c])
            aucs.append((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(aucs)) if aucs else None


def pseudolabel_quality(bundle_root: Path, config: MethodConfig, truth_path: Path,
                        durations: Mapping[str, float]) -> dict:
    """Strong event and segment F1 (%), weak clip F1 (%) and AUC of the bundle's pseudolabels on its unlabeled
    clips that `truth_path` lists, under `config`'s target setting and eval settings; n_clips, truth.

    Cheap (thresholds and scoring of saved predictions) and cached beside the bundle per setting and truth.

    Args:
        durations: clip id -> its audio's length (s), for every unlabeled clip the truth lists.

    Raises:
        DataError: a malformed truth TSV, or one that lists none of the unlabeled clips.
    """
    setting = TargetSetting.of(config)
    truth_sha = hashlib.sha256(Path(truth_path).read_bytes()).hexdigest()
    key = identity.digest(setting, dataclasses.replace(config.eval, evaluator="fast"), truth_sha)
    path = Path(bundle_root) / f"pseudolabel-quality-{key}.json"
    try:
        return read_json(path)
    except RecordError:
        pass
    bundle = Bundle.open(bundle_root, verify=False)
    truth = Truth.read(Path(truth_path), bundle.classes)
    known = set(truth.clip_ids)
    rows = [i for i, clip in enumerate(bundle.clip_ids("unlabeled")) if clip in known]
    if not rows:
        raise DataError(f"{truth_path}: lists none of the {len(bundle.clip_ids('unlabeled'))} unlabeled clips; "
                        "check data.unlabeled_truth_tsv (it must name them as the unlabeled TSV does)")
    ids = [bundle.clip_ids("unlabeled")[i] for i in rows]
    strong = np.asarray(bundle.array("teacher_unlabeled_strong"))[rows]
    weak = np.asarray(bundle.array("teacher_unlabeled_weak"))[rows]
    scores = _scores(strong, weak, ids, setting, bundle, truth, [durations[i] for i in ids], config)
    write_json(path, {**scores, "n_clips": len(ids), "truth": str(Path(truth_path).absolute())})
    return read_json(path)


def _scores(strong: np.ndarray, weak: np.ndarray, ids: list[str], setting: TargetSetting, bundle: Bundle,
            truth: Truth, durations: list[float], config: MethodConfig) -> dict[str, float | None]:
    events = strong_pseudolabels(strong, weak, ids, setting, bundle.hop_seconds, bundle.classes, durations)
    ev = event_based(truth.events, events, ids, config.eval.t_collar, config.eval.percentage_of_length,
                     config.eval.evaluator, classes=bundle.classes)
    seg = segment_based(truth.events, events, ids, config.eval.segment_seconds, config.eval.evaluator,
                        classes=bundle.classes)
    present = truth.present(ids, bundle.classes)
    return {"strong_event_f1": 100 * ev.macro_f1, "strong_segment_f1": 100 * seg.macro_f1,
            "weak_clip_f1": 100 * weak_clip_f1(weak, present, setting.presence_threshold),
            "weak_auc": weak_auc(weak, present)}


def quality_rows(bundles: Mapping[str, Path], jobs: Sequence[JobSpec], data: DataState,
                 names: Mapping[str, str]) -> tuple[PseudolabelRow, ...]:
    """study.json's pseudolabel rows: per built bundle, one per target setting of its jobs that use pseudolabels
    (of all its jobs when none does); () when the truth of the unlabeled clips is not known.

    Args:
        names: bundle key -> the teacher's row name in the tables.
    """
    truth = unlabeled_truth(data.config)
    if truth is None or not data.subsets["unlabeled"].clips:
        return ()
    durations = _durations(data, truth)
    shown = _shown(truth, Path(str(data.config.root)))
    rows = []
    for key, root in bundles.items():
        if not (Path(root) / MANIFEST).exists():  # on Slurm, a bundle still queued (as for the teacher rows)
            continue
        for job in _jobs_per_setting([j for j in jobs if j.bundle_key == key]):
            rows.append(_row(names[key], root, job.config, truth, durations, shown))
    return tuple(rows)


def _shown(truth: Path, root: Path) -> str:
    """The truth's path as the report names it: relative to the data's root when inside it (a generated corpus
    lies in the cache, whose place says nothing about the study), else absolute."""
    try:
        return truth.absolute().relative_to(root.absolute()).as_posix()
    except ValueError:
        return str(truth.absolute())


def _durations(data: DataState, truth: Path) -> dict[str, float]:
    """The audio length of each unlabeled clip the truth lists (headers read once, not for the other clips)."""
    listed = set(read_strong_tsv(truth, data.classes))
    return {c.clip_id: c.duration for c in data.subsets["unlabeled"].clips if c.clip_id in listed}


def _jobs_per_setting(jobs: Sequence[JobSpec]) -> list[JobSpec]:
    """The first job of each target setting, among the jobs that distil (all the jobs when none does)."""
    distilling = [j for j in jobs if j.config.loss.pseudolabels != "none"] or list(jobs)
    firsts: dict[TargetSetting, JobSpec] = {}
    for job in distilling:
        firsts.setdefault(TargetSetting.of(job.config), job)
    return list(firsts.values())


def _row(name: str, root: Path, config: MethodConfig, truth: Path, durations: Mapping[str, float], shown: str
         ) -> PseudolabelRow:
    q = pseudolabel_quality(root, config, truth, durations)
    own = teacher_scores(root, config)  # cached: the teacher rows of the tables read the same file
    setting = TargetSetting.of(config)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return PseudolabelRow(name=name, presence_threshold=setting.presence_threshold, gated=setting.gated,
                          strong_event_f1=rounded(q["strong_event_f1"]),
                          strong_segment_f1=rounded(q["strong_segment_f1"]),
                          weak_clip_f1=rounded(q["weak_clip_f1"]), weak_auc=rounded(q["weak_auc"]),
                          n_clips=int(q["n_clips"]), val_f1=rounded(own["validation"]["event_f1"]),
                          test_f1=rounded(own["test"]["event_f1"]), truth=shown)
