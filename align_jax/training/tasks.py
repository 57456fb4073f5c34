"""Tasks plug a model family into the generic loop: loss, metrics, preprocessing, selection.

A task answers: how to initialise the model, the per-batch loss and metric outputs (a pure
function of variables, batch, key and step), which preprocessing its images need, which
validation metric picks the best checkpoint, and what to write after each evaluation.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import optax

from align_jax.data import input_pipeline
from align_jax.errors import InputError
from align_jax.runtime import names
from align_jax.training import metrics, objectives, samples


class _ImageTask:
  """What every task shares: initialisation from an image batch, padding masks in outputs."""

  def between_epochs(self):
    """The task as evaluated at epoch ends (the final test evaluation uses the task itself)."""
    return self

  def init_variables(self, model, key: jax.Array, images: jnp.ndarray) -> dict:
    return model.init({"params": key}, images, train=False)

  @staticmethod
  def with_mask(outputs: dict, batch: dict) -> dict:
    """Forwards the batch's padding mask (eval batches) to the clu metrics."""
    if "mask" in batch:
      outputs["mask"] = batch["mask"]
    return outputs


# Test-time augmentation: (view, weight) pairs whose logits are averaged. A view is
# (flip, shift): a horizontal flip, then the image moved by one pixel diagonally (either way),
# the uncovered border black.
TEST_TIME_VIEWS = {
    "flip": (((False, 0), 0.5), ((True, 0), 0.5)),
    "flip_shift": tuple(((flip, shift), weight) for flip in (False, True)
                        for shift, weight in ((0, 0.25), (-1, 0.125), (1, 0.125))),
}


def _view(images: jnp.ndarray, flip: bool, shift: int) -> jnp.ndarray:
  """`images` (normalised, [b, h, w, c]) flipped, then output pixel (r, c) = input
  (r + shift, c + shift): the border that falls outside is black, as the training crops'
  padding is."""
  if flip:
    images = images[:, :, ::-1]
  if shift:
    black = jnp.asarray(-input_pipeline.CIFAR10_MEAN / input_pipeline.CIFAR10_STD, images.dtype)
    h, w = images.shape[1:3]
    padded = jnp.pad(images - black, ((0, 0), (1, 1), (1, 1), (0, 0))) + black
    images = padded[:, 1 + shift:1 + shift + h, 1 + shift:1 + shift + w]
  return images


@dataclasses.dataclass(frozen=True)
class ClassificationTask(_ImageTask):
  """Cross-entropy against `batch[target_field]`: hard labels or label distributions.

  label_smoothing: training targets mixed with the uniform distribution by this share.
  test_time_augmentation: '' (none), 'flip' or 'flip_shift' (TEST_TIME_VIEWS): the final
  evaluation also reports tta_loss and tta_accuracy of the averaged logits; loss and accuracy
  stay the plain prediction's, and select the best checkpoint.
  """
  target_field: str = "label"
  label_smoothing: float = 0.0
  test_time_augmentation: str = ""
  preprocessing: str = "classifier"
  selection_metric: str = "accuracy"
  selection_mode: str = "max"
  train_metrics: type = metrics.ClassifierMetrics

  def __post_init__(self):
    if self.test_time_augmentation not in names.TEST_TIME_AUGMENTATIONS:
      raise InputError(f"test_time_augmentation={self.test_time_augmentation!r} is not one of "
                       f"{names.TEST_TIME_AUGMENTATIONS}.")
    if not 0 <= self.label_smoothing < 1:
      raise InputError(f"label_smoothing={self.label_smoothing} must be in [0, 1).")

  def between_epochs(self) -> "ClassificationTask":
    """Epoch-end validation skips test-time augmentation: it costs several forward passes
    per image, and selection uses the plain accuracy anyway."""
    return dataclasses.replace(self, test_time_augmentation="")

  @property
  def eval_metrics(self) -> type:
    if self.test_time_augmentation:
      return metrics.AugmentedClassifierMetrics
    return metrics.ClassifierMetrics

  def _targets(self, batch: dict, num_classes: int, train: bool) -> jnp.ndarray:
    targets = batch[self.target_field]
    if not (train and self.label_smoothing):
      return targets
    if targets.ndim == 1:
      targets = jax.nn.one_hot(targets, num_classes)
    return optax.smooth_labels(targets, self.label_smoothing)

  def loss(self, model, variables: dict, batch: dict, key: jax.Array, train: bool, step):
    """Returns (loss, (updated model state, metric outputs))."""
    del step
    mutable = ["batch_stats"] if train else False
    output = model.apply(variables, batch["image"], train=train, rngs={"dropout": key},
                         mutable=mutable)
    (logits, _), new_state = output if train else (output, {})
    mask = batch.get("mask")
    per_example = objectives.cross_entropy(logits,
                                           self._targets(batch, logits.shape[-1], train))
    accuracy = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    outputs = self.with_mask({"loss": per_example, "accuracy": accuracy}, batch)
    if not train and self.test_time_augmentation:
      view_logits = lambda view: logits if view == (False, 0) else model.apply(
          variables, _view(batch["image"], *view), train=False)[0]
      averaged = sum(weight * view_logits(view)
                     for view, weight in TEST_TIME_VIEWS[self.test_time_augmentation])
      outputs["tta_loss"] = objectives.cross_entropy(averaged, batch[self.target_field])
      outputs["tta_accuracy"] = (jnp.argmax(averaged, -1) == batch["label"]).astype(jnp.float32)
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
