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
    try:
        record = read_record(path, StudyRecord)
    except RecordError as e:
        if not e.damaged:  # unreadable (permissions): that advice holds
            raise
        raise RecordError(e.fact, damaged_study_advice(run_dir)) from e
    # Reading a run reads it with its plugins: their metrics are columns of its tables (report, rescore).
    from harness import plugins

    plugins.load_entry_points()
    plugins.load_plugins(record.plugins, where=str(path))
    return record


def damaged_study_advice(run_dir: Path) -> str:
    """What is true of a damaged study.json: what it holds, what does not depend on it, and how to write it again.

    Deleting it loses the record of the resolution (study file, profile, --set flags, data) and of the plan;
    the jobs' own files stay, and `run` with the same flags resolves the same plan (job ids are content keys),
    so it keeps every finished job and writes study.json again. `run` itself refuses while the file is
    damaged (it compares resolutions), so it must go first.
    """
    run_dir = Path(run_dir)
    study, profile = _recorded_by_jobs(run_dir)
    return (f"study.json records how the run was resolved (study file, profile, --set flags, data folder and "
            f"digest, harness commit) and its plan (variants, seeds, job ids, tables, comparisons, the teacher's "
            f"scores); deleting it loses only that record: the jobs' results in {run_dir / 'jobs'} stay. If a newer "
            f"harness version wrote it, use that version. Otherwise delete it and run the command that made this "
            f"run again, with the same flags: "
            f"python -m harness run <the study file{study}> --profile {profile} <its --set flags> --runs "
            f"{shlex.quote(str(run_dir.parent))} --name {shlex.quote(run_dir.name)}. That writes study.json again "
            "and keeps every job that finished or failed (it runs only the others, as any run does); `status` "
            "and `report` work again once it is written")


def _recorded_by_jobs(run_dir: Path) -> tuple[str, str]:
    """(" of study NAME", profile) from any readable job.json of the run, to help rebuild the command line."""
    from harness.records import JobRecord

    for path in sorted((run_dir / "jobs").glob("*/job.json"))[:20]:
        try:
            job = read_record(path, JobRecord)
        except RecordError:
            continue
        return f" of study {job.study!r}", job.profile
    return "", "<its profile>"


# What starting a run writes before it records anything: a folder holding only these was created for nothing.
_STARTING = (".lock", "environment.json")


def first_new_folder(run_dir: Path) -> Path | None:
    """The topmost folder of `run_dir`'s path that does not exist yet (what starting a run creates: the run
    directory, and runs/ itself on a first run), absolute; None when the run directory exists."""
    path = Path(run_dir).absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def remove_if_bare(run_dir: Path, created: Path) -> None:
    """Remove a run directory that holds only what starting a run writes (its lock, environment.json, stop
    files), and the empty folders above it up to `created` (first_new_folder before the run): a run refused
    before it recorded anything (bad data, say) leaves no folder behind. Called by the run that created the
    folder, while it holds the lock; anything else in it (a job, study.json) keeps it."""
    run_dir = Path(run_dir).absolute()
    try:
        entries = list(run_dir.iterdir())
        if any(p.name not in _STARTING and not p.name.startswith(".stop-") for p in entries):
            return
        for p in entries:
            p.unlink()
        for folder in (run_dir, *run_dir.parents):
            folder.rmdir()  # fails, and stops here, on a folder that holds anything else
            if folder == created:
                break
    except OSError:  # a file appeared meanwhile, or it cannot be removed: a folder left is harmless
        pass


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
