"""clu metric collections, one per task and phase. A model output named `mask` excludes padding."""

import flax
from clu import metrics


@flax.struct.dataclass
class ClassifierMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  accuracy: metrics.Average.from_output("accuracy")


@flax.struct.dataclass
class AugmentedClassifierMetrics(metrics.Collection):
  """ClassifierMetrics plus those of the test-time-augmented prediction (clu collections
  declare every field: a subclass's own annotations are all that clu reads)."""
  loss: metrics.Average.from_output("loss")
  accuracy: metrics.Average.from_output("accuracy")
  tta_loss: metrics.Average.from_output("tta_loss")
  tta_accuracy: metrics.Average.from_output("tta_accuracy")


@flax.struct.dataclass
class VAETrainMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  recon_l1: metrics.Average.from_output("recon_l1")
  kl: metrics.Average.from_output("kl")
  beta: metrics.Average.from_output("beta")


@flax.struct.dataclass
class VAEEvalMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  recon_l1: metrics.Average.from_output("recon_l1")
  kl: metrics.Average.from_output("kl")
  psnr: metrics.Average.from_output("psnr")
