"""The metrics that plugins register (harness.plugins.MetricSpec with a `compute`), on one split of a job.

The built-in metrics are computed together by the harness's own evaluation; these are computed here, by the
job's final evaluation and by `rescore`, from the same outputs: frame and clip probabilities as scored.
"""

from __future__ import annotations

import math

from harness.bundle import Bundle


def plugin_metric_values(frame, clip, bundle: Bundle, subset: str) -> dict[str, float | None]:
    """The registered metrics that compute themselves (plugins: harness.plugins.MetricSpec) on one split.

    Raises:
        PluginError: a metric that fails or returns something other than a finite number or None (named).
    """
    from harness.plugins import MetricInputs, PluginError, plugin_metrics

    inputs = MetricInputs(frame=frame, clip=clip, clip_ids=tuple(bundle.clip_ids(subset)),
                          durations=bundle.durations(subset), reference=bundle.reference(subset),
                          hop_seconds=bundle.hop_seconds, classes=tuple(bundle.classes))
    out: dict[str, float | None] = {}
    for metric in plugin_metrics():
        try:
            value = metric.compute(inputs)  # type: ignore[misc]
        except Exception as e:  # the plugin's own error, named, with the split
            raise PluginError(f"metric {metric.name!r} failed on {subset}: {type(e).__name__}: {e}") from e
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise PluginError(f"metric {metric.name!r} returned {value!r} on {subset}; a metric returns a finite "
                              "number (in %) or None where it is undefined")
        out[metric.name] = None if value is None else float(value)
    return out
