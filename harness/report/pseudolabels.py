"""The report's table of the teachers' pseudolabels on the unlabeled clips (study.json `pseudolabel_rows`,
computed when the study ran: harness.study.pseudolabels). A study whose data has no truth of its unlabeled
clips has no rows, and the report no such section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.report.tables import _num

CAPTION = "Teacher pseudolabels on the unlabeled clips"
STEM = "pseudolabels"
HOW_TO_READ = (
    "How to read it. Each row scores what the students of a teacher are given, on the {n} unlabeled clips whose "
    "true events are known ({truth}). Strong: the frames where the teacher's frame probability reaches "
    "loss.presence_threshold (with event masking, only in the clips where its clip probability reaches it too: "
    "the other classes' frames are masked out of the student's loss), cut into events without a median filter "
    "and scored like the students (event-based and segment-based macro F1, %). Weak: the clip probability at the "
    "same threshold against the classes present in each clip (clip-level macro F1, %), and its ROC AUC (0.5 is "
    "chance, 1 a perfect ranking; macro over the classes with clips with and without them). Validation and test "
    "F1 are the teacher's own, after the report's post-processing (median filter, gating), as in its row of the "
    "tables above: a strong F1 far below them says the raw pseudolabels are poorer targets than the teacher's "
    "scored output suggests."
)


def pseudolabel_blocks(out_dir: Path, study: dict[str, Any]) -> list[Any]:
    """The section (heading, table, how to read it) and tables/pseudolabels.*; [] without rows."""
    from harness.report.build import Block, _write_table

    rows = study.get("pseudolabel_rows") or []
    if not rows:
        return []
    numeric = pd.DataFrame([{k: np.nan if r[k] is None else r[k] for k in _NUMERIC} for r in rows])
    display = pd.DataFrame([_display_row(r) for r in rows])
    _write_table(out_dir, STEM, numeric, display, CAPTION)
    truths = sorted({r["truth"] for r in rows})
    n = "/".join(str(c) for c in sorted({r["n_clips"] for r in rows}))
    return [Block("h2", CAPTION), Block("table", CAPTION, table=display),
            Block("p", HOW_TO_READ.format(n=n, truth=", ".join(truths)))]


_NUMERIC = ("name", "presence_threshold", "gated", "strong_event_f1", "strong_segment_f1", "weak_clip_f1",
            "weak_auc", "n_clips", "val_f1", "test_f1")


def _display_row(r: dict[str, Any]) -> dict[str, str]:
    threshold = f"{r['presence_threshold']:g}"
    targets = f"frames >= {threshold}" + (f" in clips >= {threshold}" if r["gated"] else "")
    return {"Teacher": r["name"], "Strong pseudolabels": targets,
            "Strong event F1": _num(r["strong_event_f1"], ".1f"),
            "Strong segment F1": _num(r["strong_segment_f1"], ".1f"),
            "Weak clip F1": _num(r["weak_clip_f1"], ".1f"), "Weak AUC": _num(r["weak_auc"], ".3f"),
            "n clips": str(r["n_clips"]), "Validation F1": _num(r["val_f1"], ".1f"),
            "Test F1": _num(r["test_f1"], ".1f")}

