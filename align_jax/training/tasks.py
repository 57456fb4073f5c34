"""Tasks plug a model family into the generic loop: loss, metrics, preprocessing, selection.

A task answers: how to initialise the model, the per-batch loss and metric outputs (a pure
function of variables, batch, key and step), which preprocessing its images need, which
validation metric picks the best checkpoint, and what to write after each evaluation.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp

from align_jax.data import input_pipeline
from align_jax.training import metrics, objectives, samples


class _ImageTask:
  """What every task shares: initialisation from an image batch, padding masks in outputs."""

  def init_variables(self, model, key: jax.Array, images: jnp.ndarray) -> dict:
    return model.init({"params": key}, images, train=False)

  @staticmethod
  def with_mask(outputs: dict, batch: dict) -> dict:
    """Forwards the batch's padding mask (eval batches) to the clu metrics."""
    if "mask" in batch:
      outputs["mask"] = batch["mask"]
    return outputs


@dataclasses.dataclass(frozen=True)
class ClassificationTask(_ImageTask):
  """Cross-entropy against `batch[target_field]`: hard labels or label distributions."""
  target_field: str = "label"
  preprocessing: str = "classifier"
  selection_metric: str = "accuracy"
  selection_mode: str = "max"
  train_metrics: type = metrics.ClassifierMetrics
  eval_metrics: type = metrics.ClassifierMetrics

  def loss(self, model, variables: dict, batch: dict, key: jax.Array, train: bool, step):
    """Returns (loss, (updated model state, metric outputs))."""
    del step
    mutable = ["batch_stats"] if train else False
    output = model.apply(variables, batch["image"], train=train, rngs={"dropout": key},
                         mutable=mutable)
    (logits, _), new_state = output if train else (output, {})
    mask = batch.get("mask")
    per_example = objectives.cross_entropy(logits, batch[self.target_field])
    accuracy = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    outputs = self.with_mask({"loss": per_example, "accuracy": accuracy}, batch)
    return objectives.masked_mean(per_example, mask), (new_state, outputs)

  def after_evaluation(self, model, variables, examples, step, writer, workdir) -> None:
    """Classifiers write nothing beyond their metrics."""


@dataclasses.dataclass(frozen=True)
class VAETask(_ImageTask):
  """L1 reconstruction (summed per image) + beta * KL(q(z|x) || N(0, I)), KL warmed up linearly.

  Training samples z with a per-step key; evaluation reports the same objective at the full
  beta on the posterior mean, plus PSNR. The best checkpoint has the lowest validation loss.
  """
  beta: float = 1.0
  kl_warmup_steps: int = 0
  num_grid_images: int = 16
  preprocessing: str = "generative"
  selection_metric: str = "loss"
  selection_mode: str = "min"
  train_metrics: type = metrics.VAETrainMetrics
  eval_metrics: type = metrics.VAEEvalMetrics

  def beta_at(self, step):
    if not self.kl_warmup_steps:
      return jnp.float32(self.beta)
    return self.beta * jnp.minimum(1.0, step / self.kl_warmup_steps)

  def loss(self, model, variables: dict, batch: dict, key: jax.Array, train: bool, step):
    images = batch["image"]
    reconstruction, features = model.apply(variables, images, train=train,
                                           key=key if train else None)
    recon = objectives.l1_reconstruction(reconstruction, images)
    kl = objectives.gaussian_kl(features["latent_mean"], features["latent_logvar"])
    beta = self.beta_at(step) if train else jnp.float32(self.beta)
    per_example = recon + beta * kl
    outputs = {"loss": per_example, "recon_l1": recon, "kl": kl}
    if train:
      outputs["beta"] = jnp.full_like(recon, beta)
    else:
      outputs["psnr"] = objectives.psnr(reconstruction, images)
    return (objectives.masked_mean(per_example, batch.get("mask")),
            ({}, self.with_mask(outputs, batch)))

  def after_evaluation(self, model, variables, examples, step, writer, workdir) -> None:
    """Writes test images beside their reconstructions, and prior samples (fixed key)."""
    prep = input_pipeline.PREPROCESSING[self.preprocessing]
    images = input_pipeline.preprocess(examples["image"][:self.num_grid_images], prep, None)
    grids = samples.vae_grids(model, variables, images)
    writer.write_images(step, {f"samples/{k}": v[None] for k, v in grids.items()})
    if jax.process_index() == 0:
      for name, grid in grids.items():
        samples.save_png(grid, os.path.join(workdir, "samples"), f"{name}_{step:07d}",
                         f"{name.replace('_', ' ')} at step {step}")


TASKS = {
    "classification": ClassificationTask,
    "vae": VAETask,
}
