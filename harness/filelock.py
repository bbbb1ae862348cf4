"""Exclusive locks on cache targets, so that studies (or Dask workers) sharing a cache build each thing once.

`locked(target)` holds an `flock` on `<target>.lock` beside the target while a corpus, a features file or a
bundle is checked and built: a second process waits, then finds the finished target and reuses it,
instead of building it again or deleting the first one's work in progress. The lock dies with its
process (kill -9 included), so a crash never leaves a stale lock; the `.lock` file itself is kept (removing
it would let two processes lock two different files of the same name).
"""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from harness.errors import HarnessError
from harness.records import no_follow

log = logging.getLogger("harness.lock")


def lock_path(target: Path) -> Path:
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


@contextmanager
def locked(target: Path, what: str = "") -> Iterator[None]:
    """Hold the lock of `target` (blocking); logs once when another process holds it.

    Raises:
        HarnessError: the lock file cannot be created (the cache folder is not writable).
    """
    path = lock_path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", opener=no_follow)  # the holder is written: never through a link
    except OSError as e:
        raise HarnessError(f"{path}: cannot create a lock file ({e.strerror or e}); check that the cache folder "
                           f"{path.parent} is writable") from e
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process building %s", what or target)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
