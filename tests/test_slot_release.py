"""A job hands its GPU slot back when its probabilities are computed: its CPU-only scoring runs while another
job takes the slot. The slots are host-wide file locks (harness.study.devices), leased here without a GPU."""

from __future__ import annotations

import contextlib
import dataclasses
import json

from harness.study.devices import device_lease
from harness.study.job import run_job


def test_the_slot_is_free_for_another_job_while_the_first_is_scored(tiny_study_job, tiny_bundle, tmp_path):
    job = dataclasses.replace(tiny_study_job, config=dataclasses.replace(
        tiny_study_job.config, train=dataclasses.replace(tiny_study_job.config.train, steps=4)))
    seen = []
    with contextlib.ExitStack() as lease:
        slot = lease.enter_context(device_lease("auto", jobs_per_gpu=1, gpus=1))
        assert slot == "cuda:0"

        def release() -> None:
            lease.close()
            # Another job asks for a slot now: it gets the one this job held, at once (blocking would hang here).
            with device_lease("auto", jobs_per_gpu=1, gpus=1, poll_seconds=3600) as second:
                seen.append((second, (tmp_path / "job" / "result.json").exists(),
                             (tmp_path / "job" / "probabilities_test.npz").exists()))

        result = run_job(job, tiny_bundle, tmp_path / "job", device="cpu", threads=1, release=release)
    # released once, after the probabilities were computed and before anything was scored or written
    assert seen == [("cuda:0", False, False)]
    written = json.loads((tmp_path / "job" / "result.json").read_text())
    assert written["val_f1"] == result.val_f1 and (tmp_path / "job" / "probabilities_test.npz").exists()


def test_a_held_slot_is_not_given_twice():
    import threading

    got = threading.Event()

    def second_job() -> None:
        with device_lease("auto", jobs_per_gpu=1, gpus=1, poll_seconds=0.05):
            got.set()

    with device_lease("auto", jobs_per_gpu=1, gpus=1):
        waiting = threading.Thread(target=second_job, daemon=True)
        waiting.start()
        assert not got.wait(0.5)  # the only slot is held: the second job waits
    assert got.wait(5)  # handed back: the second job takes it
    waiting.join(5)
    with device_lease("cuda:1", gpus=1) as fixed, device_lease("auto", gpus=0) as none:
        assert (fixed, none) == ("cuda:1", "cpu")  # an explicit device is never leased; no GPU: the CPU
