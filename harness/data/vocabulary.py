"""A study's classes, read from its data: the order of every [C] vector and [C, T] matrix of the study.

By default the classes are the sorted union of the labels of the strong training TSV (subset "synthetic")
and of the weak TSV (when the dataset has one); `[data] classes = [...]` fixes another order, or names
classes that no training label uses. Either way every label of every subset must be one of them: the
subsets are read against the vocabulary (harness.data.desed.LabelCheck), so a label outside it is an error
naming its TSV and line.

For DESED and the built-in synthetic corpus the derived list is harness.constants.CLASSES (sorted), so
their studies keep their class order and identity. Derived classes are a function of the two TSVs' bytes,
which the data key already hashes; an explicit `data.classes` enters the key only when set
(harness.study.stages.read_data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from harness.config import DataConfig
from harness.data.desed import subset_labels
from harness.errors import ConfigError, DataError

# The subsets whose labels make the vocabulary: the labeled training data the models learn the classes from.
SOURCE_SUBSETS: tuple[str, ...] = ("synthetic", "weak")


def derived_classes(data: DataConfig, root: Path) -> tuple[str, ...]:
    """The sorted union of the labels of the strong training TSV and the weak TSV.

    Raises:
        DataError: a TSV missing or malformed (named), or no label in either (nothing to learn).
    """
    labels: set[str] = set()
    for name in SOURCE_SUBSETS:
        labels |= subset_labels(data, name, root)
    if not labels:
        raise DataError(f"{root}: the strong training TSV and the weak TSV hold no event label, so the study has "
                        "no classes; label the training clips, or list the classes in [data] classes")
    return tuple(sorted(labels))


def study_classes(data: DataConfig, root: Path) -> tuple[str, ...]:
    """The study's classes: data.classes when set (checked), else `derived_classes`.

    Raises:
        ConfigError: a malformed data.classes.
        DataError: no class derivable from the data.
    """
    if data.classes is None:
        return derived_classes(data, root)
    check_classes(data.classes)
    return tuple(data.classes)


def check_classes(classes: Sequence[str]) -> None:
    """Refuse a [data] classes list no study can use: empty, a blank or repeated name, or a comma in a name
    (the weak TSV separates labels with commas).

    Raises:
        ConfigError: naming the key and the offending name.
    """
    if not classes:
        raise ConfigError("[data] classes is empty; list the study's classes, or leave the key out to use the "
                        "labels of the strong training and weak TSVs")
    seen: set[str] = set()
    for name in classes:
        if not name.strip() or name != name.strip() or "," in name:
            raise ConfigError(f"[data] classes: {name!r} is not a class name; a name has no comma and no leading or "
                            "trailing space, as the TSVs write it")
        if name in seen:
            raise ConfigError(f"[data] classes: {name!r} is listed twice; list each class once")
        seen.add(name)
