"""Stage 1 of the pipeline: datasets on disk (DESED or the built-in synthetic corpus) and their labels.

- `desed`: reads a DESED root into `Subset`s of `Clip`s with `Event`s, validating every TSV row.
- `encoder`: the one conversion between events in seconds and the [C, T] frame grid.
- `synth`: generates the synthetic DESED-format corpus (imported on demand: it needs scipy).
"""

from harness.data.desed import Clip, Event, Subset, load_dataset, load_subset
from harness.data.encoder import LabelEncoder

__all__ = ["Clip", "Event", "Subset", "LabelEncoder", "load_dataset", "load_subset"]
