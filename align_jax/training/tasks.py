"""Tasks plug a model family into the generic loop: loss, metrics, preprocessing, selection.

A task answers: how to initialise the model, the per-batch loss and metric outputs, which
preprocessing its images need, and which validation metric picks the best checkpoint.
"""

import dataclasses

import jax
import jax.numpy as jnp

from align_jax.training import metrics, objectives


@dataclasses.dataclass(frozen=True)
class ClassificationTask:
  """Cross-entropy against `batch[target_field]`: hard labels or label distributions."""
  target_field: str = "label"
  preprocessing: str = "classifier"
  selection_metric: str = "accuracy"
  selection_mode: str = "max"
  train_metrics: type = metrics.ClassifierMetrics
  eval_metrics: type = metrics.ClassifierMetrics

  def init_variables(self, model, key: jax.Array, images: jnp.ndarray) -> dict:
    return model.init({"params": key}, images, train=False)

  def loss(self, model, variables: dict, batch: dict, key: jax.Array, train: bool):
    """Returns (loss, (updated model state, metric outputs))."""
    mutable = ["batch_stats"] if train else False
    output = model.apply(variables, batch["image"], train=train, rngs={"dropout": key},
                         mutable=mutable)
    (logits, _), new_state = output if train else (output, {})
    mask = batch.get("mask")
    per_example = objectives.cross_entropy(logits, batch[self.target_field])
    accuracy = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    outputs = {"loss": per_example, "accuracy": accuracy}
    if mask is not None:
      outputs["mask"] = mask
    return objectives.masked_mean(per_example, mask), (new_state, outputs)


TASKS = {
    "classification": ClassificationTask,
}
