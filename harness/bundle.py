"""The on-disk shared-stage bundle that training reads: features, labels and teacher pseudolabels.

A bundle is a directory `<cache>/stages/<key>/` of memory-mappable arrays and a `manifest.json` written
last (its presence marks the bundle complete). It sits below both the study layer, which builds it
(harness.study.stages), and the training loop, which reads it (harness.method.train).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Bundle:
    """Read-only view of a finished stage bundle; arrays are memory-mapped, never copied."""

    root: Path
    manifest: dict

    @classmethod
    def open(cls, root: Path) -> "Bundle":
        root = Path(root)
        manifest_path = root / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{root}: stage bundle is incomplete (no manifest.json)")
        return cls(root=root, manifest=json.loads(manifest_path.read_text()))

    def array(self, name: str) -> np.ndarray:
        """A bundle array by name, memory-mapped read-only."""
        return np.load(self.root / self.manifest["arrays"][name], mmap_mode="r")

    def features(self, subset: str) -> np.ndarray:
        """Student log-mel features of a subset, [N, T, F], un-normalised, memory-mapped."""
        return np.load(self.manifest["features"][subset], mmap_mode="r")

    def clip_ids(self, subset: str) -> list[str]:
        return list(self.manifest["clip_ids"][subset])

    def reference(self, subset: str) -> pd.DataFrame:
        """Reference events of validation or test (filename, onset, offset, event_label)."""
        return pd.read_csv(self.root / f"{subset}_reference.tsv", sep="\t", keep_default_na=False,
                           dtype={"filename": str, "event_label": str})

    @property
    def norm(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.manifest["norm_mean"], np.float32), np.asarray(self.manifest["norm_std"], np.float32)

    @property
    def event_frames(self) -> dict[str, np.ndarray]:
        """Median and mean event length per class, in frames, from the strong training set. [C] each."""
        return {k: np.asarray(v, np.float64) for k, v in self.manifest["event_frames"].items()}
