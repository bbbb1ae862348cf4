"""Log-mel features (SPEC section 2, Features) and their on-disk cache.

`extract` turns a subset's (clip id, audio path) pairs into a memory-mapped [N, 500, n_mels] array,
computed once per (subset, feature config, audio content); `normalization` gives the per-bin mean
and std of the training subsets. `logmel` / `logmel_batch` compute the features of audio in memory.
"""

from harness.features.audio import read_audio, resample
from harness.features.cache import FeatureSet, extract, normalization
from harness.features.logmel import logmel, logmel_batch, mel_filterbank

__all__ = [
    "FeatureSet",
    "extract",
    "logmel",
    "logmel_batch",
    "mel_filterbank",
    "normalization",
    "read_audio",
    "resample",
]
