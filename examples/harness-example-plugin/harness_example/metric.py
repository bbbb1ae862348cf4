"""Clip-level macro ROC AUC (%): how well the clip probabilities rank the clips that hold a class first."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def clip_auc(outputs) -> float | None:
    """Mean over classes of the AUC of the clip probabilities against "the clip has an event of the class"
    (Mann-Whitney: the share of (positive, negative) clip pairs ranked right, ties half); classes whose
    clips are all positive or all negative are left out; None when none is left."""
    present = np.zeros((len(outputs.clip_ids), len(outputs.classes)), bool)
    row = {c: i for i, c in enumerate(outputs.clip_ids)}
    column = {c: j for j, c in enumerate(outputs.classes)}
    for name, label in zip(outputs.reference["filename"], outputs.reference["event_label"]):
        present[row[name], column[label]] = True
    aucs = []
    for j in range(len(outputs.classes)):
        positive, n = present[:, j], len(present)
        n_pos = int(positive.sum())
        if n_pos in (0, n):
            continue
        ranks = rankdata(np.asarray(outputs.clip)[:, j])
        aucs.append((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (n - n_pos)))
    return 100 * float(np.mean(aucs)) if aucs else None
