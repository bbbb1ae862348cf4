"""The harness's own names, registered through the same calls a plugin uses (harness.plugins)."""

from __future__ import annotations

from harness import plugins
from harness.config import FACTORS, CRNNConfig, StudentConfig
from harness.plugins import FactorSpec


def _key(name: str) -> str:
    return ".".join(FACTORS[name])


# The paper's four factors: their short names, headers, the abbreviations of its variant names
# (EF+SW+EM+CS; levels whose abbreviation is "" are left out of a name) and how its tables print levels.
PAPER_FACTORS: tuple[FactorSpec, ...] = (
    FactorSpec(key=_key("curriculum"), name="curriculum", label="Curriculum",
               abbreviations={"easier": "EF", "harder": "HF", "all": ""},
               level_labels={"easier": "Easier", "harder": "Harder", "all": "All"}),
    FactorSpec(key=_key("pseudolabels"), name="pseudolabels", label="Pseudolabels",
               abbreviations={"strong+weak": "SW", "weak": "W", "none": ""},
               level_labels={"strong+weak": "Strong+weak", "weak": "Weak only", "none": "None"}),
    FactorSpec(key=_key("masking"), name="masking", label="Masking",
               abbreviations={"event": "EM", "segment": "SM", "none": "NM"},
               level_labels={"event": "Event", "segment": "Segment", "none": "None"}),
    FactorSpec(key=_key("augmentation"), name="augmentation", label="Augmentation",
               abbreviations={"custom": "CS", "standard": "SS", "none": "NS"},
               level_labels={"custom": "Custom", "standard": "Standard", "none": "None"}),
)

for _spec in PAPER_FACTORS:
    plugins.factors.register(_spec.name, _spec)


# --------------------------------------------------------------------------- models
# Builders and sizes import their modules (and torch) only when a job calls them: planning a study reads
# this registry without torch.


def _build_lstm(config, n_mels: int, n_classes: int):
    from harness.model.student import Student

    return Student(n_mels, config, n_classes)


def _lstm_size(config, n_mels: int, n_classes: int, n_frames: int):
    from harness.model.size import lstm_size

    return lstm_size(config, n_mels, n_classes, n_frames)


def _build_crnn(config, n_mels: int, n_classes: int):
    from harness.model.crnn import CRNN

    return CRNN(n_mels, config, n_classes)


def _crnn_size(config, n_mels: int, n_classes: int, n_frames: int):
    from harness.model.crnn import crnn_size

    return crnn_size(config, n_mels, n_classes, n_frames)


plugins.models.register("lstm", plugins.ModelSpec(
    name="lstm", config=StudentConfig, build=_build_lstm, size=_lstm_size,
    description="the paper's student: stacked unidirectional LSTM, attention pooling"))
plugins.models.register("crnn", plugins.ModelSpec(
    name="crnn", config=CRNNConfig, build=_build_crnn, size=_crnn_size, check=CRNNConfig.check,
    description="the DCASE 2021-2024 Task 4 baseline CRNN: conv blocks, bidirectional GRU, attention pooling"))


# --------------------------------------------------------------------------- metrics
# The metrics of results.csv, computed together by the harness's own evaluation (harness.study.job): the
# event-based F1 of the paper, the segment-based F1, and the threshold-free metrics of sed_scores_eval.
BUILTIN_METRICS: tuple[plugins.MetricSpec, ...] = (
    plugins.MetricSpec("f1", "F1"),
    plugins.MetricSpec("segment_f1", "segment F1"),
    plugins.MetricSpec("psds1", "PSDS1", threshold_free=True, bootstrappable=True),
    plugins.MetricSpec("psds2", "PSDS2", threshold_free=True, bootstrappable=True),
    plugins.MetricSpec("intersection_f1", "intersection F1", threshold_free=True, bootstrappable=True),
    plugins.MetricSpec("collar_f1", "collar F1", threshold_free=True, bootstrappable=True),
)
for _metric in BUILTIN_METRICS:
    plugins.metrics.register(_metric.name, _metric)


# --------------------------------------------------------------------------- backends


def _inprocess(settings):
    from harness.study.executors.inprocess import InProcessExecutor

    return InProcessExecutor()


def _local(settings):
    from harness.study.executors.local import LocalExecutor

    return LocalExecutor(settings.parallel, settings.threads)


def _dask(settings):
    from harness.study.executors.dask import DaskExecutor

    return DaskExecutor(settings)


for _backend in (
    plugins.ExecutorSpec("local", _local, "processes on this machine"),
    plugins.ExecutorSpec("dask", _dask, "a Dask cluster (--scheduler ADDRESS)"),
    plugins.ExecutorSpec("slurm", None, "submit every job to Slurm and exit"),
    plugins.ExecutorSpec("inprocess", _inprocess, "one job at a time in this process (debugging)"),
):
    plugins.executors.register(_backend.name, _backend)
