"""The functions the driver hands to workers, by a name that imports nothing heavy.

An executor sends a task's function to its worker by reference (its module and name). Naming the functions of
harness.study.job directly would make the driver import that module, and with it torch (seconds), although the
driver never trains; these wrappers import it in the worker, which needs it anyway.
"""

from __future__ import annotations


def execute(*args, **kwargs) -> dict:
    """harness.study.job.execute, imported in the worker."""
    from harness.study.job import execute as run

    return run(*args, **kwargs)
