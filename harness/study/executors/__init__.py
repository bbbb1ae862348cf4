"""Where tasks run: one interface (submit, outcomes, cancel), one backend per module.

The runner hands every piece of work (a feature chunk, a teacher member, a bundle, a student job) to an
Executor as a Task and reads back Outcomes; it never sees a backend's own exceptions. Each backend turns
the ways its workers die into the typed failures of harness.errors (WorkerDied, Preempted, TimedOut),
which the runner retries (--retries) since they say nothing about the task itself.
"""

from harness.study.executors.base import Executor, Outcome, Task, make_executor

__all__ = ["Executor", "Outcome", "Task", "make_executor"]
