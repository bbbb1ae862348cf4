"""Read a DESED root (SPEC section 3) into typed, validated records.

One `Subset` per metadata TSV: its clips with their audio path, duration and labels. Every defect of a
TSV is reported with the TSV's path and the 1-based line number (the header is line 1), so a user can
open the file and fix it. Missing audio files (failed YouTube downloads) either stop the load with a
count and examples, or, with `DataConfig.skip_missing`, are dropped and logged.
"""

from __future__ import annotations

import csv
import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

import pandas as pd
import soundfile as sf

from harness.config import DataConfig
from harness.constants import CLASSES, SUBSETS
from harness.errors import DataError, not_a_file

log = logging.getLogger("harness.data")

Kind = Literal["strong", "weak", "unlabeled"]

# subset -> (kind, metadata TSV, audio folder), relative to the DESED root.
LAYOUT: dict[str, tuple[Kind, str, str]] = {
    "synthetic": ("strong", "metadata/train/synthetic.tsv", "audio/train/synthetic"),
    "weak": ("weak", "metadata/train/weak.tsv", "audio/train/weak"),
    "unlabeled": ("unlabeled", "metadata/train/unlabel_in_domain.tsv", "audio/train/unlabel_in_domain"),
    "validation": ("strong", "metadata/validation/validation.tsv", "audio/validation"),
    "test": ("strong", "metadata/eval/public.tsv", "audio/eval/public"),
}

COLUMNS: dict[Kind, tuple[str, ...]] = {
    "strong": ("filename", "onset", "offset", "event_label"),
    "weak": ("filename", "event_labels"),
    "unlabeled": ("filename",),
}

REFERENCE_COLUMNS: tuple[str, ...] = ("filename", "onset", "offset", "event_label")
# The true events of the unlabeled clips, in the strong format, where they are known (the built-in synthetic
# corpus writes it). Not one of the subsets' TSVs: the data's key never reads it (harness.identity.data_key), so
# it can be added to a corpus, or changed, without making any job new. Only the report's pseudolabel quality
# reads it (harness.study.pseudolabels).
UNLABELED_TRUTH_TSV = "metadata/train/unlabel_in_domain_truth.tsv"
# Subsets a dataset may lack: without its TSV at DESED's path (and no data.<name>_tsv), one loads empty.
OPTIONAL_SUBSETS: tuple[str, ...] = ("weak", "unlabeled")
_MAX_LISTED = 5  # missing files named in an error message
# How to skip missing files, for every command that can meet them (`data check` has no [data] table).
SKIP_MISSING_HINT = ("`harness run`/`plan`/`status`: --set data.skip_missing=true (or skip_missing = true in the "
                     "study's [data] table); `harness data check`: --skip-missing")


@dataclass(frozen=True)
class Event:
    """One labelled sound event of a clip, in seconds from the clip's start."""

    onset: float
    offset: float
    label: str


@dataclass(frozen=True)
class Clip:
    """One audio clip and its labels.

    Attributes:
        clip_id: the file name as written in the TSV, e.g. "Y0a1b2c3d4e5_30.000_40.000.wav".
        path: the audio file.
        events: the strong labels (strong subsets; possibly empty); None for weak and unlabeled clips.
        weak: the clip's class labels (weak subsets; for strong subsets the labels of its events);
            None for unlabeled clips.
    """

    clip_id: str
    path: Path
    events: tuple[Event, ...] | None
    weak: frozenset[str] | None

    @functools.cached_property
    def duration(self) -> float:
        """Length of the audio in seconds, read from the file header on first use.

        Not read when the subset is loaded: every run loads every subset, and opening ~18,000 DESED
        headers took seconds that a run with its features cached never needs.
        """
        return audio_duration(self.path)


@dataclass(frozen=True)
class Subset:
    """The clips of one metadata TSV, in the order of their first row."""

    name: str
    kind: Kind
    clips: tuple[Clip, ...]
    tsv: Path
    audio_dir: Path

    @property
    def clip_ids(self) -> tuple[str, ...]:
        """File names of the clips, in order."""
        return tuple(clip.clip_id for clip in self.clips)

    def reference_events(self) -> pd.DataFrame:
        """The strong labels as a DataFrame with columns filename, onset, offset, event_label.

        Clips without events contribute no rows (evaluation iterates over `clip_ids` to include them).

        Raises:
            DataError: the subset is not strongly labelled.
        """
        if self.kind != "strong":
            raise DataError(f"subset {self.name!r} ({self.tsv}) is {self.kind}, it has no strong labels")
        rows = [
            (clip.clip_id, ev.onset, ev.offset, ev.label) for clip in self.clips for ev in clip.events or ()
        ]
        return pd.DataFrame(rows, columns=list(REFERENCE_COLUMNS)).astype(
            {"onset": float, "offset": float}
        )


# --------------------------------------------------------------------------- paths


def subset_paths(data: DataConfig, name: str, root: Path) -> tuple[Kind, Path, Path]:
    """(kind, TSV path, audio folder) of a subset, with DataConfig's `<name>_tsv/_audio` overrides."""
    if name not in LAYOUT:
        raise DataError(f"unknown subset {name!r}; valid subsets: {', '.join(LAYOUT)}")
    kind, tsv, audio = LAYOUT[name]
    tsv = getattr(data, f"{name}_tsv") or tsv
    audio = getattr(data, f"{name}_audio") or audio
    # Path join keeps an absolute override as it is.
    return kind, root / tsv, root / audio


def _root_of(data: DataConfig, root: Path | str | None) -> Path:
    if root is None:
        if data.root is None:
            raise DataError("data.root is not set: give the DESED root folder in the study's [data] table")
        root = data.root
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"DESED root {root} does not exist or is not a folder; check data.root")
    return root


# --------------------------------------------------------------------------- TSV parsing


def _read_rows(tsv: Path, kind: Kind) -> list[tuple[int, list[str]]]:
    """The data rows of a TSV as (line number, cells), exact duplicates dropped with a warning.

    Raises:
        DataError: the file is missing, or its header lacks an expected column.
    """
    expected = COLUMNS[kind]
    lines = _tsv_lines(tsv, expected)
    if not lines:
        raise DataError(f"{tsv}: the file is empty; expected a header with columns {', '.join(expected)}")
    header = [h.strip() for h in lines[0]]
    missing = [c for c in expected if c not in header]
    if missing:  # the first line's text is not shown (the file may be anything, e.g. a secret): only our names
        present = [c for c in expected if c in header]
        raise DataError(
            f"{tsv}, line 1: missing column(s) {', '.join(missing)}; expected a DESED metadata TSV whose first line "
            f"names the tab-separated columns {', '.join(expected)} (it has {len(header)} field(s), "
            f"{', '.join(present) or 'none of them'}{' among them' if present else ''}); check the DESED root or the "
            "subset's _tsv override"
        )
    index = [header.index(c) for c in expected]
    rows, seen, duplicates = [], set(), 0
    for line_no, cells in enumerate(lines[1:], start=2):
        if not any(c.strip() for c in cells):
            continue  # blank line
        cells = cells + [""] * (len(header) - len(cells))
        picked = tuple(cells[i].strip() for i in index)
        if picked in seen:
            duplicates += 1
            continue
        seen.add(picked)
        rows.append((line_no, list(picked)))
    if duplicates:
        log.warning("%s: dropped %d exact duplicate row(s)", tsv, duplicates)
    return rows


def _tsv_lines(tsv: Path, expected: Sequence[str]) -> list[list[str]]:
    """The cells of every line of a metadata TSV; errors name the file and the format, never its content."""
    fix = "check the DESED root or the subset's _tsv override"
    if not tsv.is_file():
        raise not_a_file(tsv, "metadata file", fix)
    try:
        with tsv.open(newline="", encoding="utf-8") as f:
            return list(csv.reader(f, delimiter="\t"))
    except UnicodeDecodeError:
        raise DataError(f"{tsv}: not UTF-8 text; expected a DESED metadata TSV with the tab-separated columns "
                        f"{', '.join(expected)}; {fix}") from None
    except csv.Error:
        raise DataError(f"{tsv}: not a readable TSV; expected the tab-separated columns {', '.join(expected)}; "
                        f"{fix}") from None
    except OSError as e:
        raise DataError(f"{tsv}: cannot read ({e.strerror or e}); check its permissions") from e


def _check_filename(tsv: Path, line_no: int, filename: str) -> None:
    if not filename:
        raise DataError(f"{tsv}, line {line_no}: empty filename")


@dataclass(frozen=True)
class LabelCheck:
    """The classes every label of a TSV must be among, checked row by row so an error names the line.

    Attributes:
        classes: the vocabulary; None accepts any label (to read the labels the vocabulary is derived from).
        fix: what to do about a label outside it (where the classes come from).
    """

    classes: tuple[str, ...] | None
    fix: str = ""

    def __call__(self, tsv: Path, line_no: int, label: str) -> None:
        if self.classes is not None and label not in self.classes:
            fix = f"; {self.fix}" if self.fix else ""
            raise DataError(
                f"{tsv}, line {line_no}: unknown class {label!r}; valid classes: {', '.join(self.classes)}{fix}"
            )


def label_check(data: DataConfig, classes: Sequence[str] | None = None) -> LabelCheck:
    """The check of a study's labels: against `classes`, else data.classes, else DESED's classes."""
    if data.classes is not None:
        return LabelCheck(tuple(data.classes), "correct the label, or add it to [data] classes")
    if classes is None:
        return LabelCheck(CLASSES, "correct the label (DESED's classes)")
    return LabelCheck(tuple(classes), "correct the label; the classes are the labels of the strong training "
                                      "TSV and the weak TSV, or [data] classes when it is set")


def _parse_time(tsv: Path, line_no: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{tsv}, line {line_no}: {column} {text!r} is not a number (seconds)") from None
    if not math.isfinite(value) or value < 0:
        raise DataError(f"{tsv}, line {line_no}: {column} {text!r} must be a finite time >= 0 s")
    return value


def _parse_strong(tsv: Path, rows: list[tuple[int, list[str]]], check: LabelCheck) -> dict[str, list[Event]]:
    """filename -> its events; an all-empty onset/offset/event_label row is a clip without events."""
    events: dict[str, list[Event]] = {}
    for line_no, (filename, onset, offset, label) in rows:
        _check_filename(tsv, line_no, filename)
        clip_events = events.setdefault(filename, [])
        if not (onset or offset or label):
            continue
        if not (onset and offset and label):
            raise DataError(
                f"{tsv}, line {line_no}: onset, offset and event_label must be all set or all empty "
                f"(a clip without events), got {onset!r}, {offset!r}, {label!r}"
            )
        check(tsv, line_no, label)
        start = _parse_time(tsv, line_no, "onset", onset)
        end = _parse_time(tsv, line_no, "offset", offset)
        if start >= end:
            raise DataError(f"{tsv}, line {line_no}: onset {start} s must be before offset {end} s")
        clip_events.append(Event(start, end, label))
    return events


def _parse_weak(tsv: Path, rows: list[tuple[int, list[str]]], check: LabelCheck) -> dict[str, set[str]]:
    """filename -> its labels, from the comma-separated `event_labels` column."""
    labels: dict[str, set[str]] = {}
    for line_no, (filename, text) in rows:
        _check_filename(tsv, line_no, filename)
        names = {name.strip() for name in text.split(",") if name.strip()}
        for name in sorted(names):
            check(tsv, line_no, name)
        labels.setdefault(filename, set()).update(names)
    return labels


# --------------------------------------------------------------------------- audio


def _present_files(
    name: str, tsv: Path, audio_dir: Path, filenames: Iterable[str], skip_missing: bool
) -> list[str]:
    """The filenames whose audio exists; missing ones raise DataError, or are logged with skip_missing."""
    filenames = list(filenames)
    if audio_dir.exists() and not audio_dir.is_dir():
        raise DataError(f"subset {name!r}: the audio folder {audio_dir} is a file, not a folder; check the DESED "
                        f"root or data.{name}_audio")
    existing = {p.name for p in audio_dir.iterdir()} if audio_dir.is_dir() else set()
    # A filename with a sub-folder is checked on disk; the bare-name set avoids one stat per clip.
    missing = [f for f in filenames if f not in existing and not (audio_dir / f).is_file()]
    if missing and not skip_missing:
        listed = ", ".join(str(audio_dir / f) for f in missing[:_MAX_LISTED])
        raise DataError(
            f"subset {name!r}: {len(missing)} of {len(filenames)} audio files listed in {tsv} are missing "
            f"from {audio_dir} (e.g. {listed}); download them, or skip them: {SKIP_MISSING_HINT}"
        )
    if missing:
        log.warning(
            "subset %r: skipping %d of %d clips whose audio is missing from %s (first: %s)",
            name, len(missing), len(filenames), audio_dir, missing[0],
        )
    lost = set(missing)
    return [f for f in filenames if f not in lost]


def audio_duration(path: Path) -> float:
    """Length of an audio file in seconds, from its header.

    Raises:
        DataError: the file cannot be read or holds no samples.
    """
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as e:
        raise DataError(f"cannot read audio file {path}: {e}; re-download or delete it") from e
    if info.frames <= 0 or info.samplerate <= 0:
        raise DataError(f"audio file {path} holds no samples; re-download or delete it")
    return info.frames / info.samplerate


def check_audio_against_labels(subsets: dict[str, Subset]) -> dict[str, list[float]]:
    """Each strongly labelled clip's audio length (s), checked against its events, per strong subset.

    The one check of audio against labels: `harness run` makes it before any feature is computed, and
    `harness data check` makes the same, so data that passes the check is never refused by a run.

    Raises:
        DataError: a clip whose audio ends before one of its events starts (a truncated or wrong file).
    """
    out = {}
    for name, subset in subsets.items():
        if subset.kind != "strong":
            continue
        seconds = []
        for clip in subset.clips:
            duration = clip.duration
            # An event that starts after the audio has ended: the file is not the audio that was labelled.
            # (Events that run a little past a clip's end are common in DESED's annotations, and are kept.)
            late = [ev for ev in clip.events or () if ev.onset >= duration]
            if late:
                raise DataError(
                    f"{clip.path}: the audio lasts {duration:.2f} s but {subset.tsv} labels an event at "
                    f"{late[0].onset:g}-{late[0].offset:g} s ({late[0].label}); re-download the file or fix its "
                    f"rows (or remove the clip from the TSV)")
            seconds.append(round(duration, 6))
        out[name] = seconds
    return out


# --------------------------------------------------------------------------- loading


def load_subset(data: DataConfig, name: str, root: Path | str | None = None,
                classes: Sequence[str] | None = None) -> Subset:
    """Read one subset (one of SUBSETS) of a DESED root.

    Args:
        data: the study's data config (overrides of the layout, skip_missing, classes).
        name: "synthetic", "weak", "unlabeled", "validation" or "test".
        root: the DESED root; None = data.root.
        classes: the vocabulary its labels must be among: data.classes when set, else these, else DESED's
            classes (`load_dataset` passes the study's, harness.data.vocabulary).

    Raises:
        DataError: a missing root, TSV or audio file, or a malformed TSV row or a label outside the classes
            (path and line named).
    """
    root = _root_of(data, root)
    kind, tsv, audio_dir = subset_paths(data, name, root)
    rows = _read_rows(tsv, kind)
    check = label_check(data, classes)
    strong = _parse_strong(tsv, rows, check) if kind == "strong" else None
    weak = _parse_weak(tsv, rows, check) if kind == "weak" else None
    order = list(dict.fromkeys(row[0] for _, row in rows))
    for line_no, row in rows:
        _check_filename(tsv, line_no, row[0])
    present = _present_files(name, tsv, audio_dir, order, data.skip_missing)
    clips = tuple(_make_clip(f, audio_dir, strong, weak) for f in present)
    return Subset(name=name, kind=kind, clips=clips, tsv=tsv, audio_dir=audio_dir)


def subset_absent(data: DataConfig, name: str, root: Path) -> bool:
    """Whether `name` is an optional subset this dataset lacks: no TSV at DESED's path and no data.<name>_tsv
    (an override names a file the user means to have: when it is missing, loading it is an error)."""
    if name not in OPTIONAL_SUBSETS or getattr(data, f"{name}_tsv") is not None:
        return False
    return not (Path(root) / LAYOUT[name][1]).exists()


def empty_subset(data: DataConfig, name: str, root: Path) -> Subset:
    """An absent optional subset, as a subset of no clips (its TSV and audio paths where DESED has them)."""
    kind, tsv, audio_dir = subset_paths(data, name, root)
    return Subset(name=name, kind=kind, clips=(), tsv=tsv, audio_dir=audio_dir)


def subset_labels(data: DataConfig, name: str, root: Path) -> set[str]:
    """Every label of a strong or weak subset's TSV, read without a vocabulary (none for an absent one)."""
    if subset_absent(data, name, root):
        return set()
    kind, tsv, _ = subset_paths(data, name, root)
    rows = _read_rows(tsv, kind)
    anything = LabelCheck(None)
    if kind == "strong":
        return {ev.label for events in _parse_strong(tsv, rows, anything).values() for ev in events}
    if kind == "weak":
        return set().union(*_parse_weak(tsv, rows, anything).values())
    return set()


def unlabeled_truth(data: DataConfig, root: Path | str | None = None) -> Path | None:
    """The TSV of the unlabeled clips' true events: data.unlabeled_truth_tsv (relative to the root, or absolute),
    else the corpus's UNLABELED_TRUTH_TSV when it exists, else None (their truth is not known).

    Raises:
        DataError: data.unlabeled_truth_tsv names a file that does not exist.
    """
    root = _root_of(data, root)
    if data.unlabeled_truth_tsv is None:
        path = root / UNLABELED_TRUTH_TSV
        return path if path.is_file() else None
    path = root / Path(data.unlabeled_truth_tsv).expanduser()  # an absolute one is kept as it is
    if not path.is_file():
        raise not_a_file(path, "truth of the unlabeled clips", "check data.unlabeled_truth_tsv (a strong TSV: "
                         "filename, onset, offset, event_label), or leave it out")
    return path


def read_strong_tsv(tsv: Path, classes: Sequence[str]) -> dict[str, tuple[Event, ...]]:
    """Every clip a strong TSV lists (in order, those of DESED's empty-label rows included) and its events,
    checked as a strong subset's TSV is, labels against `classes`; no audio is read.

    Raises:
        DataError: a missing or malformed TSV, or a label outside `classes` (path and line named).
    """
    check = LabelCheck(tuple(classes), "correct the label (the study's classes)")
    return {name: tuple(events) for name, events in _parse_strong(tsv, _read_rows(tsv, "strong"), check).items()}


def _make_clip(
    filename: str, audio_dir: Path, strong: dict[str, list[Event]] | None, weak: dict[str, set[str]] | None
) -> Clip:
    path = audio_dir / filename
    events = tuple(strong[filename]) if strong is not None else None
    if events is not None:
        labels: frozenset[str] | None = frozenset(ev.label for ev in events)
    elif weak is not None:
        labels = frozenset(weak[filename])
    else:
        labels = None
    return Clip(clip_id=filename, path=path, events=events, weak=labels)


def load_dataset(
    data: DataConfig, root: Path | str | None = None, subsets: Iterable[str] = SUBSETS,
    classes: Sequence[str] | None = None,
) -> dict[str, Subset]:
    """Read several subsets of a DESED root: {name: Subset}, in the order given.

    An optional subset the dataset lacks (OPTIONAL_SUBSETS, see `subset_absent`) is empty. Labels are checked
    against `classes`, by default the study's (harness.data.vocabulary.study_classes), which are derived from
    the strong training TSV: a read without that subset (e.g. validation alone) checks against
    data.classes or DESED's classes, as `load_subset` does.
    """
    subsets = tuple(subsets)
    root = _root_of(data, root)
    if classes is None and "synthetic" in subsets:
        from harness.data.vocabulary import study_classes  # it reads TSVs with this module's parsers

        classes = study_classes(data, root)
    return {name: empty_subset(data, name, root) if subset_absent(data, name, root)
            else load_subset(data, name, root, classes) for name in subsets}
