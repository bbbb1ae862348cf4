"""Energy of a stage of a job (kWh), with codecarbon's OfflineEmissionsTracker, as the DCASE 2024 Task 4
baselines report it. Optional: without codecarbon (or when it fails to start) a reading is "not measured",
never an error, so energy can never fail a job.

How codecarbon gets its figures, recorded with each reading (`estimate`): a power sensor when one is
readable (Intel RAPL under /sys/class/powercap, NVIDIA's NVML for GPUs), otherwise an estimate: "CPU(Cpu
Load)" is the CPU's TDP (from codecarbon's table of CPU models, or a generic value) scaled by the measured
CPU load, "CPU(<model> > N W)" a constant share of the TDP; RAM is a fixed power per GB in use. On the
project's 2-core VMs no sensor is readable and the CPU figure is the load-scaled TDP estimate: compare
kWh between variants of one study on one machine, not with published numbers measured elsewhere.

Settings, and why:
- `tracking_mode="process"`: jobs run side by side in one machine; each reading counts this process's
  (and its children's) CPU time and memory, not its neighbours'.
- the offline tracker with an explicit country (`train.energy_country`, default "USA", codecarbon's own
  example): the online tracker would look the location up over the network, which jobs must never need.
  The country only sets the carbon intensity of codecarbon's CO2 figure; kWh do not depend on it, and
  the harness records kWh only.
- `save_to_file=False` and `log_level="error"`: no emissions.csv in the working directory, no log lines
  in every job's log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("harness.energy")

DEFAULT_COUNTRY = "USA"
NOT_INSTALLED = "not measured: codecarbon is not installed"


@dataclass(frozen=True)
class EnergyReading:
    """Energy used between start and stop.

    Attributes:
        kwh: kilowatt-hours (CPU + GPU + RAM), None when not measured.
        estimate: how codecarbon got its power figures (module doc), or why nothing was measured.
        seconds: the duration codecarbon measured (0 when not measured).
    """

    kwh: float | None
    estimate: str
    seconds: float = 0.0


class EnergyMeter:
    """A codecarbon tracker around one stage: `start()`, then `stop()` returns its EnergyReading.

    Args:
        country: ISO 3166-1 alpha-3 code for the offline tracker (module doc).
        gpu_ids: the GPUs to count (the job's own); None: codecarbon's default (all it sees).
        measure_seconds: interval of codecarbon's power samples during the stage (a last one at stop).
    """

    def __init__(self, country: str = DEFAULT_COUNTRY, gpu_ids: list[int] | None = None,
                 measure_seconds: float = 15.0) -> None:
        self.country, self.gpu_ids, self.measure_seconds = country, gpu_ids, measure_seconds
        self._tracker = None
        self._why = NOT_INSTALLED

    def start(self) -> "EnergyMeter":
        try:
            from codecarbon import OfflineEmissionsTracker
        except ImportError:
            return self
        logging.getLogger("codecarbon").setLevel(logging.ERROR)  # its init lines come before log_level applies
        try:
            tracker = OfflineEmissionsTracker(
                country_iso_code=self.country, log_level="error", save_to_file=False, tracking_mode="process",
                measure_power_secs=self.measure_seconds, gpu_ids=self.gpu_ids, allow_multiple_runs=True)
            tracker.start()
        except Exception as e:  # noqa: BLE001 - energy is a by-product: a tracker that fails must not fail the job
            self._why = f"not measured: codecarbon failed to start ({type(e).__name__}: {e})"
            log.warning("energy %s", self._why)
            return self
        self._tracker = tracker
        return self

    def stop(self) -> EnergyReading:
        tracker, self._tracker = self._tracker, None
        if tracker is None:
            return EnergyReading(None, self._why)
        try:
            tracker.stop()
            data = tracker.final_emissions_data
            kwh = float(data.energy_consumed)
            seconds = float(data.duration)
        except Exception as e:  # noqa: BLE001 - as in start
            log.warning("energy not measured: codecarbon failed to stop (%s: %s)", type(e).__name__, e)
            return EnergyReading(None, f"not measured: codecarbon failed ({type(e).__name__})")
        return EnergyReading(kwh, estimate_of(tracker), seconds)

    def __enter__(self) -> "EnergyMeter":
        return self.start()

    def __exit__(self, *exc) -> None:
        if self._tracker is not None:  # left by an exception: stop the sampling thread, drop the reading
            self.stop()


def estimate_of(tracker) -> str:
    """codecarbon's power source per device, e.g. "CPU(Cpu Load) TDP 8 W; RAM()" (module doc)."""
    parts = []
    for device in getattr(tracker, "_hardware", []):
        text = device.description() if hasattr(device, "description") else repr(device)
        tdp = getattr(device, "_tdp", None)
        if getattr(device, "_mode", None) == "cpu_load" and tdp:
            text += f" TDP {tdp:g} W"
        parts.append(text)
    return "; ".join(parts) or "codecarbon"

