"""clu metric collections, one per task and phase. A model output named `mask` excludes padding."""

import flax
from clu import metrics


@flax.struct.dataclass
class ClassifierMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  accuracy: metrics.Average.from_output("accuracy")
