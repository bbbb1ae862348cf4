"""harness.data.synth: the tiny corpus reads back as DESED, deterministically, with the designed statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.config import DataConfig
from harness.constants import CLASSES
from harness.data.desed import load_dataset
from harness.data.synth import MARKER, SIZES, ensure_corpus, generate
from harness.errors import DataError


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tiny_corpus_loads_with_expected_counts(tiny_corpus: Path) -> None:
    data = load_dataset(DataConfig(root=str(tiny_corpus)))
    assert {name: len(sub.clips) for name, sub in data.items()} == SIZES["tiny"]
    assert [sub.kind for sub in data.values()] == ["strong", "weak", "unlabeled", "strong", "strong"]
    assert all(clip.weak for clip in data["weak"].clips)  # every weak clip has at least one label
    marker = json.loads((tiny_corpus / MARKER).read_text())
    assert marker == {"size": "tiny", "seed": 0, "sample_rate": 16000, "counts": SIZES["tiny"]}


def test_audio_is_10s_16bit_mono(tiny_corpus: Path) -> None:
    data = load_dataset(DataConfig(root=str(tiny_corpus)))
    for sub in data.values():
        for clip in sub.clips:
            info = sf.info(str(clip.path))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert clip.duration == pytest.approx(10.0)
    audio, _ = sf.read(str(data["synthetic"].clips[0].path))
    assert 0.2 < np.abs(audio).max() < 0.95  # neither silent nor clipped


def test_every_class_in_strong_set_and_empty_validation_clips(tiny_corpus: Path) -> None:
    data = load_dataset(DataConfig(root=str(tiny_corpus)))
    strong_labels = {ev.label for clip in data["synthetic"].clips for ev in clip.events}
    assert strong_labels == set(CLASSES)
    assert any(clip.events == () for clip in data["validation"].clips)
    assert any(clip.events == () for clip in data["test"].clips)
    # The empty clips are written as DESED's empty-label rows.
    lines = (tiny_corpus / "metadata/validation/validation.tsv").read_text().splitlines()
    assert any(line.endswith("\t\t\t") for line in lines)
    for sub in data.values():
        for clip in sub.clips:
            for ev in clip.events or ():
                assert 0 <= ev.onset < ev.offset <= 10.0


def test_short_classes_have_shorter_events(tiny_corpus: Path) -> None:
    data = load_dataset(DataConfig(root=str(tiny_corpus)))
    lengths: dict[str, list[float]] = {}
    for name in ("synthetic", "validation", "test"):
        for clip in data[name].clips:
            for ev in clip.events:
                lengths.setdefault(ev.label, []).append(ev.offset - ev.onset)
    short = [x for c in ("Dishes", "Dog", "Alarm_bell_ringing") for x in lengths.get(c, [])]
    long = [x for c in ("Vacuum_cleaner", "Frying", "Running_water") for x in lengths.get(c, [])]
    assert short and long
    assert np.median(short) < 1.0 < 2.0 < np.median(long)


def test_regeneration_is_byte_identical_and_seed_dependent(tiny_corpus: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, "tiny", seed=0)
    first, second = _files(tiny_corpus), _files(again)
    assert first.keys() == second.keys()
    assert all(first[k] == second[k] for k in first)
    generate(tmp_path / "other", "tiny", seed=1)
    other = _files(tmp_path / "other")
    differing = [k for k in first if k in other and first[k] != other[k]]
    # Synthetic clips keep their names ("0.wav"...), so their bytes can be compared across seeds.
    assert "audio/train/synthetic/0.wav" in differing
    assert first["metadata/train/synthetic.tsv"] != other["metadata/train/synthetic.tsv"]


def test_parallel_workers_write_the_same_bytes(tiny_corpus: Path, tmp_path: Path) -> None:
    generate(tmp_path / "par", "tiny", seed=0, n_jobs=2)
    assert _files(tmp_path / "par") == _files(tiny_corpus)


def test_complete_corpus_is_reused_and_unfinished_one_redone(tiny_corpus: Path, tmp_path: Path) -> None:
    stamp = (tiny_corpus / MARKER).stat().st_mtime_ns
    assert ensure_corpus(tiny_corpus, "tiny", 0) == tiny_corpus
    assert (tiny_corpus / MARKER).stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="seed 0"):
        generate(tiny_corpus, "tiny", seed=3)
    # An interrupted generation: files but no marker, and the in-progress flag left behind.
    broken = tmp_path / "broken"
    generate(broken, "tiny", seed=0)
    (broken / MARKER).unlink()
    (broken / ".generating").write_text("")
    (broken / "audio/train/synthetic/0.wav").write_bytes(b"truncated")
    generate(broken, "tiny", seed=0)
    assert _files(broken) == _files(tiny_corpus)


def test_refuses_a_folder_that_is_not_a_corpus(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        generate(tmp_path, "tiny")
