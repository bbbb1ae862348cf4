"""The on-disk shared-stage bundle that training reads: features, labels and teacher pseudolabels.

A bundle is a directory `<cache>/stages/<key>/` of memory-mappable arrays and a `manifest.json`
(harness.records.BundleManifest) written last: its presence marks the bundle complete. Every path in the
manifest is relative to the bundle's folder (the student features live in `<cache>/features/`, two levels
up), so a cache can be moved or shared between machines as a whole. Every file's checksum is in the
manifest and `verify` checks them all before a run uses the bundle.

It sits below both the study layer, which builds it (harness.study.stages), and the training loop, which
reads it (harness.method.train).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.constants import CLASSES
from harness.errors import HarnessError
from harness.records import ArrayEntry, BundleManifest, RecordError, file_checksum, read_record

MANIFEST = "manifest.json"


class CacheCorrupt(HarnessError):
    """A cached file's bytes no longer match the checksum recorded when it was written."""

    def __init__(self, path: Path, part: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.part = part  # "array" (a file of the bundle) or "features" (a cached features file)


@dataclass(frozen=True)
class Bundle:
    """Read-only view of a finished stage bundle; arrays are memory-mapped, never copied."""

    root: Path
    manifest: BundleManifest

    @classmethod
    def open(cls, root: Path, verify: bool = True) -> "Bundle":
        """Open the bundle at `root`, checking every file's checksum unless `verify` is False.

        Raises:
            RecordError: no readable manifest (the bundle is incomplete or damaged).
            CacheCorrupt: a file is missing or its bytes changed since the bundle was written.
        """
        root = Path(root)
        if not (root / MANIFEST).exists():
            raise RecordError(f"{root}: stage bundle is incomplete (no {MANIFEST}); run the study again to "
                              "rebuild it")
        bundle = cls(root=root, manifest=read_record(root / MANIFEST, BundleManifest))
        if verify:
            bundle.verify()
        return bundle

    @property
    def key(self) -> str:
        return self.manifest.key

    def verify(self) -> None:
        """Check the checksum of every file of the bundle and of the features it uses.

        Raises:
            CacheCorrupt: naming the first file that is missing or damaged.
        """
        for part, entries in (("features", self.manifest.features), ("array", self.manifest.arrays)):
            for entry in entries.values():
                self._check(entry, part)

    def _check(self, entry: ArrayEntry, part: str) -> None:
        path = self.root / entry.path
        try:
            actual = file_checksum(path)
        except RecordError:
            actual = "missing"
        if actual != entry.checksum:
            raise CacheCorrupt(path, part, f"{path} is damaged or missing (checksum {actual}, recorded "
                                           f"{entry.checksum} when bundle {self.root.name} was written)")

    def array(self, name: str) -> np.ndarray:
        """A bundle array by name, memory-mapped read-only."""
        return np.load(self.root / self.manifest.arrays[name].path, mmap_mode="r")

    def features(self, subset: str) -> np.ndarray:
        """Student log-mel features of a subset, [N, T, F], un-normalised, memory-mapped."""
        return np.load(self.root / self.manifest.features[subset].path, mmap_mode="r")

    def clip_ids(self, subset: str) -> list[str]:
        return list(self.manifest.clip_ids[subset])

    def durations(self, subset: str) -> np.ndarray:
        """Seconds of audio of each clip of an evaluation subset. [N]"""
        return np.asarray(self.manifest.durations[subset], np.float64)

    def reference(self, subset: str) -> pd.DataFrame:
        """Reference events of validation or test (filename, onset, offset, event_label)."""
        return pd.read_csv(self.root / f"{subset}_reference.tsv", sep="\t", keep_default_na=False,
                           dtype={"filename": str, "event_label": str})

    @property
    def classes(self) -> tuple[str, ...]:
        """The study's classes, the order of every [.., C, ..] array of the bundle and of its scores."""
        return self.manifest.classes or CLASSES  # a manifest older than recorded classes: DESED's, then the only ones

    @property
    def hop_seconds(self) -> float:
        """The frame hop of every [.., T] array of the bundle (frame i starts at i * hop)."""
        return self.manifest.frame_hop_seconds

    @property
    def norm(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.manifest.norm_mean, np.float32), np.asarray(self.manifest.norm_std, np.float32)

    @property
    def event_frames(self) -> dict[str, np.ndarray]:
        """Median and mean event length per class, in frames, from the strong training set. [C] each."""
        return {k: np.asarray(v, np.float64) for k, v in self.manifest.event_frames.items()}
