"""An example plugin: a model of its own (`student.model = "tinyconv"`) and a metric of its own (`clip_auc`).

Importing the package registers both, through the same calls the harness makes for its built-ins.
"""

from harness import plugins
from harness_example.metric import clip_auc
from harness_example.model import TinyConvConfig, build, size

plugins.models.register("tinyconv", plugins.ModelSpec(
    name="tinyconv", config=TinyConvConfig, build=build, size=size,
    description="a 1-D convolution over time and a linear head (an example plugin)"))
plugins.metrics.register("clip_auc", plugins.MetricSpec(
    name="clip_auc", label="clip AUC", compute=clip_auc, threshold_free=True, bootstrappable=False))
