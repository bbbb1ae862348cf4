"""harness.data.desed on hand-written DESED roots in temporary folders."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.config import DataConfig
from harness.data.desed import Event, LAYOUT, load_dataset, load_subset
from harness.errors import DataError

SR = 16000


def _wav(path: Path, seconds: float = 10.0, sr: int = SR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(int(round(seconds * sr)), dtype=np.int16), sr, subtype="PCM_16")


def _tsv(root: Path, subset: str, text: str) -> Path:
    path = root / LAYOUT[subset][1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _audio(root: Path, subset: str, *names: str, seconds: float = 10.0) -> None:
    for name in names:
        _wav(root / LAYOUT[subset][2] / name, seconds)


STRONG_HEADER = "filename\tonset\toffset\tevent_label\n"


def test_strong_subset_keeps_empty_label_clips_and_reads_events(tmp_path: Path) -> None:
    _tsv(tmp_path, "validation", STRONG_HEADER + "a.wav\t0.5\t1.25\tDog\na.wav\t2\t3\tCat\nb.wav\t\t\t\n")
    _audio(tmp_path, "validation", "a.wav", "b.wav")
    sub = load_subset(DataConfig(root=str(tmp_path)), "validation")
    assert sub.kind == "strong"
    assert sub.clip_ids == ("a.wav", "b.wav")
    a, b = sub.clips
    assert a.events == (Event(0.5, 1.25, "Dog"), Event(2.0, 3.0, "Cat"))
    assert a.weak == frozenset({"Dog", "Cat"})
    assert b.events == () and b.weak == frozenset()
    assert a.duration == pytest.approx(10.0)
    assert a.path == tmp_path / "audio/validation/a.wav"
    ref = sub.reference_events()
    assert list(ref.columns) == ["filename", "onset", "offset", "event_label"]
    assert ref.values.tolist() == [["a.wav", 0.5, 1.25, "Dog"], ["a.wav", 2.0, 3.0, "Cat"]]


def test_weak_subset_reads_comma_separated_labels(tmp_path: Path) -> None:
    _tsv(tmp_path, "weak", "filename\tevent_labels\nw1.wav\tSpeech,Dog\nw2.wav\tFrying\n")
    _audio(tmp_path, "weak", "w1.wav", "w2.wav")
    sub = load_subset(DataConfig(root=str(tmp_path)), "weak")
    assert [c.weak for c in sub.clips] == [frozenset({"Speech", "Dog"}), frozenset({"Frying"})]
    assert all(c.events is None for c in sub.clips)
    with pytest.raises(DataError, match="no strong labels"):
        sub.reference_events()


def test_unlabeled_subset_and_short_clip_duration(tmp_path: Path) -> None:
    _tsv(tmp_path, "unlabeled", "filename\nu1.wav\nu2.wav\n")
    _audio(tmp_path, "unlabeled", "u1.wav")
    _audio(tmp_path, "unlabeled", "u2.wav", seconds=7.25)
    sub = load_subset(DataConfig(root=str(tmp_path)), "unlabeled")
    assert [c.duration for c in sub.clips] == [pytest.approx(10.0), pytest.approx(7.25)]
    assert all(c.events is None and c.weak is None for c in sub.clips)


def test_missing_audio_is_an_error_naming_count_and_paths(tmp_path: Path) -> None:
    _tsv(tmp_path, "weak", "filename\tevent_labels\nw1.wav\tDog\nw2.wav\tCat\nw3.wav\tCat\n")
    _audio(tmp_path, "weak", "w2.wav")
    with pytest.raises(DataError) as err:
        load_subset(DataConfig(root=str(tmp_path)), "weak")
    message = str(err.value)
    assert "2 of 3" in message
    assert str(tmp_path / "audio/train/weak/w1.wav") in message
    assert str(tmp_path / "audio/train/weak/w3.wav") in message
    assert "skip_missing = true" in message


def test_skip_missing_drops_clips_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _tsv(tmp_path, "weak", "filename\tevent_labels\nw1.wav\tDog\nw2.wav\tCat\nw3.wav\tCat\n")
    _audio(tmp_path, "weak", "w2.wav")
    with caplog.at_level(logging.WARNING, logger="harness.data"):
        sub = load_subset(DataConfig(root=str(tmp_path), skip_missing=True), "weak")
    assert sub.clip_ids == ("w2.wav",)
    assert any("skipping 2 of 3" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("row", "pattern"),
    [
        ("a.wav\t1\t2\tDoggo", "unknown class 'Doggo'; valid classes: Alarm_bell_ringing, Blender"),
        ("a.wav\t2\t2\tDog", "onset 2.0 s must be before offset 2.0 s"),
        ("a.wav\t3\t2\tDog", "onset 3.0 s must be before offset 2.0 s"),
        ("a.wav\t-0.5\t2\tDog", "must be a finite time >= 0"),
        ("a.wav\tone\t2\tDog", "onset 'one' is not a number"),
        ("a.wav\t1\t\tDog", "must be all set or all empty"),
    ],
)
def test_bad_strong_rows_name_tsv_and_line(tmp_path: Path, row: str, pattern: str) -> None:
    tsv = _tsv(tmp_path, "synthetic", STRONG_HEADER + "ok.wav\t0\t1\tCat\n" + row + "\n")
    _audio(tmp_path, "synthetic", "ok.wav", "a.wav")
    with pytest.raises(DataError) as err:
        load_subset(DataConfig(root=str(tmp_path)), "synthetic")
    assert f"{tsv}, line 3:" in str(err.value)  # header = line 1, ok.wav = line 2
    assert pattern in str(err.value)


def test_unknown_class_in_weak_list_names_line(tmp_path: Path) -> None:
    tsv = _tsv(tmp_path, "weak", "filename\tevent_labels\nw1.wav\tDog,Kitten\n")
    _audio(tmp_path, "weak", "w1.wav")
    with pytest.raises(DataError, match=re.escape(f"{tsv}, line 2: unknown class 'Kitten'")):
        load_subset(DataConfig(root=str(tmp_path)), "weak")


def test_misnamed_columns_list_expected_and_found(tmp_path: Path) -> None:
    tsv = _tsv(tmp_path, "weak", "filename\tevent_label\nw1.wav\tDog\n")
    _audio(tmp_path, "weak", "w1.wav")
    with pytest.raises(DataError) as err:
        load_subset(DataConfig(root=str(tmp_path)), "weak")
    assert str(err.value).startswith(f"{tsv}, line 1: missing column(s) event_labels")
    assert "names the tab-separated columns filename, event_labels (it has 2 field(s), filename among them)" \
        in str(err.value)
    assert not re.search(r"event_label\b", str(err.value))  # the file's own header is not echoed (issue 27)


def test_duplicate_rows_dropped_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = "a.wav\t1\t2\tDog\n" * 3 + "b.wav\t\t\t\n" * 2
    tsv = _tsv(tmp_path, "test", STRONG_HEADER + rows)
    _audio(tmp_path, "test", "a.wav", "b.wav")
    with caplog.at_level(logging.WARNING, logger="harness.data"):
        sub = load_subset(DataConfig(root=str(tmp_path)), "test")
    assert sub.clips[0].events == (Event(1.0, 2.0, "Dog"),)
    assert sub.clips[1].events == ()
    assert any(str(tsv) in r.getMessage() and "3 exact duplicate" in r.getMessage() for r in caplog.records)


def test_missing_root_and_missing_tsv(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_subset(DataConfig(root=str(tmp_path / "nowhere")), "weak")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "metadata/train/weak.tsv"))):
        load_subset(DataConfig(root=str(tmp_path)), "weak")
    with pytest.raises(DataError, match="data.root is not set"):
        load_subset(DataConfig(), "weak")


def test_overrides_relative_and_absolute(tmp_path: Path) -> None:
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta/val.tsv").write_text(STRONG_HEADER + "a.wav\t0\t1\tBlender\n")
    other = tmp_path / "elsewhere"
    _wav(other / "a.wav", 4.0)
    data = DataConfig(root=str(tmp_path), validation_tsv="meta/val.tsv", validation_audio=str(other))
    datasets = load_dataset(data, subsets=("validation",))
    assert list(datasets) == ["validation"]
    clip = datasets["validation"].clips[0]
    assert clip.path == other / "a.wav" and clip.duration == pytest.approx(4.0)


def test_unreadable_audio_is_an_error_when_its_header_is_read(tmp_path: Path) -> None:
    _tsv(tmp_path, "unlabeled", "filename\nbad.wav\n")
    bad = tmp_path / LAYOUT["unlabeled"][2] / "bad.wav"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a wav file")
    clip = load_subset(DataConfig(root=str(tmp_path)), "unlabeled").clips[0]  # loading opens no audio
    with pytest.raises(DataError, match=re.escape(f"cannot read audio file {bad}")):
        clip.duration


def _full_root(root: Path) -> None:
    """A DESED root with one clip in every subset; the unlabeled one is 7.25 s long."""
    _tsv(root, "synthetic", STRONG_HEADER + "s.wav\t1\t2\tDog\n")
    _tsv(root, "weak", "filename\tevent_labels\nw.wav\tCat\n")
    _tsv(root, "unlabeled", "filename\nu.wav\n")
    _tsv(root, "validation", STRONG_HEADER + "v.wav\t1\t2\tDog\n")
    _tsv(root, "test", STRONG_HEADER + "t.wav\t\t\t\n")
    for subset, name in (("synthetic", "s.wav"), ("weak", "w.wav"), ("validation", "v.wav"), ("test", "t.wav")):
        _audio(root, subset, name)
    _audio(root, "unlabeled", "u.wav", seconds=7.25)


def test_data_check_counts_clips_and_short_ones_and_names_unreadable_audio(tmp_path: Path, capsys) -> None:
    from harness.cli import main

    _full_root(tmp_path)
    assert main(["data", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"unlabeled\s+1 clips \(unlabeled; 1 shorter than 10 s\)", out)
    assert re.search(r"synthetic\s+1 clips \(strong, 1 events; 0 shorter than 10 s\)", out)
    (tmp_path / LAYOUT["weak"][2] / "w.wav").write_bytes(b"RIFF not really a wave file")
    assert main(["data", "check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot read audio file" in err and "w.wav" in err
