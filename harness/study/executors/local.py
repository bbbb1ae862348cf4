"""Tasks on this machine's pool of loky worker processes (harness.study.workers).

A worker that dies (the out-of-memory killer, kill -9, a segfault) breaks the whole loky pool: every task
in flight stops with it, the culprit and the bystanders alike, and loky cannot say which was which. So at
most `parallel` tasks are handed to the pool at once (every one of them is then in flight), and after a
break with several in flight each of them runs again alone, first: a bystander finishes (a job resumes
from its checkpoint), a task whose worker dies while it is alone is the culprit and its outcome is
WorkerDied. A lone task's death is WorkerDied at once.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections import deque
from typing import Iterator

from harness.errors import WorkerDied
from harness.study import workers
from harness.study.executors.base import Executor, Outcome, Task, job_outcome


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, parallel: int, threads: int) -> None:
        self.parallel, self.threads = max(1, parallel), threads
        self.queue: deque[Task] = deque()
        self.suspects: deque[Task] = deque()  # in flight at a pool break: each runs again alone, first
        self.in_flight: dict[cf.Future, Task] = {}

    def submit(self, task: Task) -> None:
        self.queue.append(task)

    def outcomes(self) -> Iterator[Outcome]:
        while self.queue or self.suspects or self.in_flight:
            self._fill()
            done, _ = cf.wait(list(self.in_flight), return_when=cf.FIRST_COMPLETED)
            broken = []
            for future in done:
                task = self.in_flight.pop(future)
                try:
                    value = future.result()
                except _terminated() as death:
                    broken.append((task, death))
                except Exception as e:  # noqa: BLE001 - the task's own error is its outcome
                    yield Outcome(task, error=e)
                else:
                    yield job_outcome(task, value)
            if broken:
                yield from self._after_break(broken)

    def _fill(self) -> None:
        pool = workers.pool(self.parallel, self.threads)
        if self.suspects:  # one at a time, and only once the pool is idle
            if not self.in_flight:
                task = self.suspects.popleft()
                self.in_flight[pool.submit(task.fn, *task.args, **task.kwargs)] = task
            return
        while self.queue and len(self.in_flight) < self.parallel:
            task = self.queue.popleft()
            self.in_flight[pool.submit(task.fn, *task.args, **task.kwargs)] = task

    def _after_break(self, broken: list[tuple[Task, BaseException]]) -> Iterator[Outcome]:
        """The pool is gone: every task still in flight stopped with it."""
        stopped = broken + [(task, None) for task in self.in_flight.values()]
        self.in_flight.clear()
        workers.discard()
        if len(stopped) == 1:
            task, death = stopped[0]
            yield Outcome(task, failure=WorkerDied(_describe(death)))
            return
        self.suspects.extend(task for task, _ in stopped)

    def cancel(self, grace: float) -> None:
        self.queue.clear()
        self.suspects.clear()
        for future in self.in_flight:
            future.cancel()
        jobs = [future for future, task in self.in_flight.items() if task.kind == "job" and not future.done()]
        self.in_flight.clear()
        if jobs and grace > 0:
            workers.stop_jobs()  # each job in flight checkpoints and returns; no worker exits meanwhile
            cf.wait(jobs, timeout=grace)
        workers.discard()  # then every worker ends, a shared stage in flight with it (it has no checkpoint)


def _terminated() -> type[BaseException]:
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    return TerminatedWorkerError


def _describe(death: BaseException | None) -> str:
    text = str(death or "").strip()
    first = text.splitlines()[0] if text else "its worker process was terminated"
    return (f"the worker process running it died ({first}). This is most often the out-of-memory killer (see "
            "`dmesg`): give the job less to hold (student.hidden, fewer --jobs on the machine)")
