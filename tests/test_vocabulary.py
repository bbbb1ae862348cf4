"""A study's classes read from its data (harness.data.vocabulary), optional subsets, and what depends on them:
the data key, the bundle's recorded classes, the event lengths, teacher prediction files, the frame count."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from harness import identity
from harness.bundle import Bundle
from harness.config import DataConfig
from harness.constants import CLASSES
from harness.data.desed import LAYOUT, load_dataset
from harness.data.encoder import frames_needed
from harness.data.vocabulary import check_classes, study_classes
from harness.errors import ConfigError, DataError
from harness.records import BundleManifest, TeacherInfo
from harness.study.stages import class_event_frames, read_data
from harness.teacher.predictions import load_predictions, save_predictions

STRONG = "filename\tonset\toffset\tevent_label\n"


def _root(root: Path, weak: str | None = "w.wav\tdog_bark,siren\n", unlabeled: bool = True,
          test_rows: str = "t.wav\t1\t2\tsiren\n") -> Path:
    """A DESED-layout root of one 1-s clip per subset, labels of its own (weak / unlabeled left out on request)."""
    tsvs = {"synthetic": STRONG + "s.wav\t0.1\t0.5\tsiren\ns.wav\t0.2\t0.9\tcar_horn\n",
            "validation": STRONG + "v.wav\t0\t1\tcar_horn\n", "test": STRONG + test_rows}
    if weak is not None:
        tsvs["weak"] = "filename\tevent_labels\n" + weak
    if unlabeled:
        tsvs["unlabeled"] = "filename\nu.wav\n"
    for subset, text in tsvs.items():
        tsv, audio = root / LAYOUT[subset][1], root / LAYOUT[subset][2]
        tsv.parent.mkdir(parents=True, exist_ok=True)
        tsv.write_text(text)
        audio.mkdir(parents=True, exist_ok=True)
        for name in {line.split("\t")[0] for line in text.splitlines()[1:]}:
            sf.write(str(audio / name), np.zeros(16000, np.int16), 16000, subtype="PCM_16")
    return root


def test_derived_classes_are_the_sorted_labels_of_the_strong_training_and_weak_tsvs(tmp_path):
    root = _root(tmp_path)
    data = DataConfig(root=str(root))
    assert study_classes(data, root) == ("car_horn", "dog_bark", "siren")  # dog_bark: weak labels only
    subsets = load_dataset(data, root)
    assert subsets["weak"].clips[0].weak == frozenset({"dog_bark", "siren"})


def test_desed_classes_are_sorted_so_desed_and_the_synthetic_corpus_keep_their_order(tiny_corpus):
    assert tuple(sorted(CLASSES)) == CLASSES
    assert study_classes(DataConfig(root=str(tiny_corpus)), tiny_corpus) == CLASSES


def test_a_label_of_any_subset_outside_the_classes_names_its_file_and_line(tmp_path):
    root = _root(tmp_path, test_rows="t.wav\t1\t2\tsiren\nt.wav\t2\t3\tdrilling\n")
    tsv = root / LAYOUT["test"][1]
    with pytest.raises(DataError, match=re.escape(f"{tsv}, line 3: unknown class 'drilling'; valid classes: "
                                                  "car_horn, dog_bark, siren; correct the label")):
        load_dataset(DataConfig(root=str(root)), root)


def test_data_classes_fix_the_order_and_every_label_must_be_among_them(tmp_path):
    root = _root(tmp_path)
    data = DataConfig(root=str(root), classes=("siren", "dog_bark", "car_horn", "jackhammer"))
    assert study_classes(data, root) == data.classes
    assert list(load_dataset(data, root)) == ["synthetic", "weak", "unlabeled", "validation", "test"]
    fewer = DataConfig(root=str(root), classes=("siren", "car_horn"))
    weak = root / LAYOUT["weak"][1]
    with pytest.raises(DataError, match=re.escape(f"{weak}, line 2: unknown class 'dog_bark'; valid classes: "
                                                  "siren, car_horn; correct the label, or add it to [data] classes")):
        load_dataset(fewer, root)


@pytest.mark.parametrize(("classes", "message"), [
    ((), "[data] classes is empty"),
    (("siren", "siren"), "'siren' is listed twice"),
    (("siren,dog",), "'siren,dog' is not a class name"),
    ((" siren",), "' siren' is not a class name"),
])
def test_a_malformed_classes_list_is_refused(classes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_classes(classes)


def test_absent_weak_and_unlabeled_subsets_load_empty_but_an_override_must_exist(tmp_path):
    root = _root(tmp_path, weak=None, unlabeled=False)
    subsets = load_dataset(DataConfig(root=str(root)), root)
    assert subsets["weak"].clips == () and subsets["unlabeled"].clips == ()
    assert study_classes(DataConfig(root=str(root)), root) == ("car_horn", "siren")
    with pytest.raises(DataError, match=re.escape(str(root / "meta" / "weak.tsv"))):
        load_dataset(DataConfig(root=str(root), weak_tsv="meta/weak.tsv"), root)
    (root / LAYOUT["validation"][1]).unlink()  # validation stays required
    with pytest.raises(DataError, match=re.escape(str(root / LAYOUT["validation"][1]))):
        load_dataset(DataConfig(root=str(root)), root)


def test_the_data_key_is_unchanged_without_data_classes():
    subsets = {"synthetic": ("abc", [("a.wav", "d1"), ("b.wav", "d2")]), "weak": ("def", [])}
    assert identity.data_key(subsets) == "7d24f2c4c7936b49"  # the value of the code before classes existed
    assert identity.data_key(subsets, ("a", "b")) not in ("7d24f2c4c7936b49", identity.data_key(subsets, ("b", "a")))


def test_read_data_keys_the_data_as_before_and_classes_only_when_set(tmp_path):
    root = _root(tmp_path / "data")
    state = read_data(DataConfig(root=str(root)), tmp_path / "cache", 1)
    assert state.classes == ("car_horn", "dog_bark", "siren")
    # The inputs of the key before classes existed: every TSV's sha256 and each clip's audio digest.
    tsv = {n: hashlib.sha256(s.tsv.read_bytes()).hexdigest()[:32] for n, s in state.subsets.items()}
    assert state.key == identity.data_key({n: (tsv[n], state.clip_digests[n]) for n in state.subsets})
    fixed = read_data(DataConfig(root=str(root), classes=state.classes), tmp_path / "cache", 1)
    assert fixed.classes == state.classes and fixed.key != state.key


def test_a_class_without_strong_training_events_gets_the_length_of_all_events():
    events = pd.DataFrame({"filename": ["a", "a", "b"], "onset": [0.0, 1.0, 0.0], "offset": [0.2, 1.6, 1.0],
                           "event_label": ["siren", "siren", "car_horn"]})
    lengths = class_event_frames(events, "median", 0.02, ("siren", "dog_bark", "car_horn"))
    assert lengths == pytest.approx([20.0, 30.0, 50.0])  # siren: median(10, 30); dog_bark: median(10, 30, 50)
    assert class_event_frames(events, "mean", 0.02, ("dog_bark",)) == pytest.approx([30.0])
    with pytest.raises(DataError, match="hold no event"):
        class_event_frames(events.iloc[:0], "median", 0.02, ("siren",))


def _manifest(**extra) -> BundleManifest:
    return BundleManifest(key="k", version=2, created="", data_digest="d", features_config={}, teacher_config={},
                          teacher_seed=0, teacher=TeacherInfo(source="train", train_seconds=0.0, key="t"),
                          frame_hop_seconds=0.02, n_frames=400, clip_ids={}, durations={}, norm_mean=[],
                          norm_std=[], event_frames={}, arrays={}, **extra)


def test_a_bundle_records_its_classes_and_an_older_one_has_desed_s():
    assert Bundle(Path("."), _manifest()).classes == CLASSES
    assert Bundle(Path("."), _manifest(classes=("siren", "car_horn"))).classes == ("siren", "car_horn")


def test_teacher_predictions_are_checked_against_the_study_classes(tmp_path):
    classes = ("car_horn", "dog_bark", "siren")
    path = tmp_path / "teacher.npz"
    save_predictions(path, ["a.wav"], np.full((1, 3), 0.5), np.full((1, 3, 400), 0.5), classes)
    weak, strong = load_predictions(path, ["a.wav"], n_frames=400, classes=classes)
    assert weak.shape == (1, 3) and strong.shape == (1, 3, 400)
    with pytest.raises(DataError, match=re.escape("weak has shape (1, 3), expected (1, 10)")):
        load_predictions(path, n_frames=400)  # DESED's classes
    with pytest.raises(DataError, match="differ from the harness order"):
        load_predictions(path, n_frames=400, classes=("siren", "dog_bark", "car_horn"))


def test_frames_needed_cover_a_clip_at_a_hop():
    assert [frames_needed(10.0, 0.02), frames_needed(10.0, 0.01), frames_needed(8.0, 0.02),
            frames_needed(6.5, 0.04), frames_needed(10.0, 0.04)] == [500, 1000, 400, 163, 250]
