"""Tasks on a Dask cluster (`dask scheduler` + `dask worker`, dask-jobqueue's SLURMCluster, ...).

The cluster's workers share the file system with the driver (the cache and the run directory). Tasks
are submitted with unique keys and never deduplicated (pure=False): the harness's own caches decide what
is reused. A worker that dies under a task is retried by the scheduler itself (its allowed-failures)
before the task fails with KilledWorker, which is WorkerDied here.

No signal of the driver reaches a job on another machine, so stopping is by file: the driver creates
`stop_file`, which every job polls (harness.study.job.execute) and answers by writing its checkpoint
and returning; queued tasks are cancelled on the scheduler so that they never start.
"""

from __future__ import annotations

import functools
import time
import uuid
from pathlib import Path
from typing import Iterator

from harness.errors import ConfigError, WorkerDied
from harness.study.executors.base import Executor, ExecutorSettings, Outcome, Task, job_outcome


class DaskExecutor(Executor):
    name = "dask"

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings
        self.client = connect(settings.scheduler)
        self.resources = resources(settings.dask_resources) if settings.dask_resources else None
        self.tasks: dict = {}  # future -> Task
        self.parallel = settings.parallel
        self._completed = None
        self._token = uuid.uuid4().hex[:8]

    def submit(self, task: Task) -> None:
        fn = functools.partial(task.fn, **task.kwargs) if task.kwargs else task.fn
        future = self.client.submit(fn, *task.args, key=f"harness-{task.key}-{self._token}-{len(self.tasks)}",
                                    pure=False, resources=self.resources)
        self.tasks[future] = task
        if self._completed is not None:
            self._completed.add(future)

    def outcomes(self) -> Iterator[Outcome]:
        from distributed import KilledWorker, as_completed

        self._completed = as_completed(list(self.tasks))
        try:
            for future in self._completed:
                task = self.tasks.pop(future)
                if future.status == "error":
                    error = future.exception()
                    if isinstance(error, KilledWorker):
                        yield Outcome(task, failure=WorkerDied(f"the Dask worker running it died ({error})"))
                    else:
                        yield Outcome(task, error=error)
                else:
                    yield job_outcome(task, future.result())
        finally:
            self._completed = None

    def cancel(self, grace: float) -> None:
        """Queued tasks are cancelled at once; jobs in flight see the stop file, checkpoint and return."""
        from distributed import wait

        futures = list(self.tasks)
        if not futures:
            return
        if self.settings.stop_file:
            Path(self.settings.stop_file).touch()
        try:
            running = {key for keys in self.client.processing().values() for key in keys}
            self.client.cancel([f for f in futures if f.key not in running])
            in_flight = [f for f in futures if f.key in running]
            if in_flight:
                wait(in_flight, timeout=grace)
        except (OSError, TimeoutError):
            pass  # the scheduler is gone: nothing of the study is left to run on it
        finally:
            try:
                self.client.cancel(futures, force=True)
            except (OSError, TimeoutError):
                pass
            self.tasks.clear()

    def close(self) -> None:
        self.client.close()


def connect(scheduler: str | None):
    """A client of the scheduler at `scheduler`, reached within 10 s, or a ConfigError saying what to do."""
    if not scheduler:
        raise ConfigError("--backend dask needs --scheduler tcp://HOST:PORT (the address `dask scheduler` prints)")
    try:
        from dask.distributed import Client
    except ImportError as e:
        raise ConfigError("--backend dask needs dask and distributed: pip install 'harness[dask]'") from e
    try:
        return Client(scheduler, timeout=10)
    except (OSError, TimeoutError, ValueError) as e:
        raise ConfigError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({e}); start it "
                          "(`dask scheduler`) or fix the address, then run again") from e


def resources(text: str) -> dict[str, float]:
    """"GPU=1,MEM=8e9" -> {"GPU": 1.0, "MEM": 8e9}."""
    out = {}
    for part in text.split(","):
        name, _, amount = part.partition("=")
        try:
            out[name.strip()] = float(amount)
        except ValueError as e:
            raise ConfigError(f"--dask-resources {text!r}: expected NAME=AMOUNT[,NAME=AMOUNT]") from e
    return out


def clear_old_stop_files(run_dir: Path, older_than: float = 3600.0) -> None:
    """Stop files of earlier runs, once no straggler job of theirs can still be polling them."""
    for path in Path(run_dir).glob(".stop-*"):
        try:
            if time.time() - path.stat().st_mtime > older_than:
                path.unlink()
        except OSError:
            pass
