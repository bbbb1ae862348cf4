"""A run directory is one resolved study: its resolution is recorded when it is created and kept.

`runs/<run>/study.json` (harness.records.StudyRecord) holds the resolution (study file, profile, every
`--set`, the data's folder and digest), what the report needs, and the current plan's job ids. A run
with another resolution into the same directory is refused with the command that gives it its own;
`status`, `plan` and `report` read the record, so no flag needs repeating.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from harness.errors import ConfigError
from harness.records import RecordError, Resolution, StudyRecord, read_record
from harness.study.plan import ResolvedStudy

STUDY = "study.json"


def resolution_of(study: ResolvedStudy, data_digest: str) -> Resolution:
    return Resolution(file=str(Path(study.spec.path).absolute()), profile=study.profile,
                      overrides=study.override_texts, overrides_key=study.overrides_key,
                      data_root=study.data_identity, data_digest=data_digest)


def read_study_record(run_dir: Path) -> StudyRecord:
    """The run directory's record.

    Raises:
        RecordError: no study.json (not a run directory, or never run), or a damaged one.
    """
    path = Path(run_dir) / STUDY
    if not path.is_file():
        raise RecordError(f"{path} not found: {run_dir} is not a run directory written by `python -m harness run` "
                          "(run the study first)")
    return read_record(path, StudyRecord)


def check_same_study(run_dir: Path, study: ResolvedStudy) -> None:
    """Refuse to run `study` into a run directory created for another resolution.

    Compared: profile, the parsed overrides that change numbers (run-only ones such as the device are
    left out), and the data (a generated corpus by size and seed, DESED by its folder). The study file's
    content may change (a variant or a seed added): job ids say what is new.

    Raises:
        ConfigError: naming what differs and the command that gives the run its own directory.
    """
    if not (Path(run_dir) / STUDY).exists():
        return
    recorded = read_study_record(run_dir).resolution
    mine = resolution_of(study, recorded.data_digest)
    differences = [f"{label}: {a!r} recorded, {b!r} now"
                   for label, a, b in (("profile", recorded.profile, mine.profile),
                                       ("overrides", list(recorded.overrides), list(mine.overrides)),
                                       ("data", recorded.data_root, mine.data_root))
                   if (a != b if label != "overrides" else recorded.overrides_key != mine.overrides_key)]
    if differences:
        raise ConfigError(f"{run_dir} holds another resolution of this study ({'; '.join(differences)}); a run "
                          "directory holds one resolved study. Give this one its own: add --name "
                          f"{shlex.quote(study.run_name + '-2')} (or another name), or --runs ANOTHER_FOLDER")
