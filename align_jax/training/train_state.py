"""TrainState with BatchNorm statistics and an optional weight average; the optax optimiser
(AdamW or Nesterov SGD) and learning-rate schedule from config."""

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training import train_state

from align_jax.errors import InputError
from align_jax.runtime import names


class TrainState(train_state.TrainState):
  """`average`: None, or an exponential moving average {'params', 'batch_stats'} of the
  weights and statistics, updated after every step with `average_decay` (warmed up, so the
  first steps do not pull it towards the initialisation). Evaluation and export use it."""
  batch_stats: Any = None
  average: Any = None
  average_decay: float = struct.field(pytree_node=False, default=0.0)

  def variables(self) -> dict:
    """The model variables this state stands for: the trained ones, or their average."""
    if self.average is not None:
      return self.average
    return {"params": self.params, "batch_stats": self.batch_stats}

  def update_average(self) -> "TrainState":
    """Moves the average towards the current weights (after apply_gradients: step >= 1)."""
    if self.average is None:
      return self
    decay = jnp.minimum(self.average_decay, (1.0 + self.step) / (10.0 + self.step))
    current = {"params": self.params, "batch_stats": self.batch_stats}
    return self.replace(average=optax.incremental_update(current, self.average, 1.0 - decay))


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  """Linear warm-up for `warmup_epochs`, then cosine or linear decay to
  `lr * final_lr_fraction` at the last step."""
  total = config.num_epochs * steps_per_epoch
  warmup = int(round(config.warmup_epochs * steps_per_epoch))
  peak, end = config.learning_rate, config.learning_rate * config.final_lr_fraction
  if config.lr_schedule == "linear":
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak, warmup),
         optax.linear_schedule(peak, end, max(total - warmup, 1))], [warmup])
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0 if warmup else peak, peak_value=peak,
      warmup_steps=warmup, decay_steps=max(total, warmup + 1), end_value=end)


def decay_mask(params) -> Any:
  """Weight decay for kernels only: BatchNorm scales/offsets and biases (ndim <= 1) are exempt."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(config, steps_per_epoch)
  if config.optimizer == "sgd":
    step = optax.chain(optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
                       optax.sgd(schedule, momentum=config.momentum, nesterov=True))
  elif config.optimizer == "adamw":
    step = optax.adamw(schedule, b1=config.adam_b1, b2=config.adam_b2,
                       weight_decay=config.weight_decay, mask=decay_mask)
  else:
    raise InputError(f"optimizer={config.optimizer!r} is not one of {names.OPTIMIZERS}.")
  if config.grad_clip_norm:
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), step)
  return step


def create_train_state(variables: dict, apply_fn, tx: optax.GradientTransformation,
                       average_decay: float = 0.0) -> TrainState:
  """A fresh state from model `variables` ({'params': ..., optionally 'batch_stats': ...});
  `average_decay` > 0 keeps a weight average, starting at these variables."""
  batch_stats = variables.get("batch_stats", {})
  average = None
  if average_decay:
    average = jax.tree.map(jnp.array, {"params": variables["params"], "batch_stats": batch_stats})
  return TrainState.create(apply_fn=apply_fn, params=variables["params"], tx=tx,
                           batch_stats=batch_stats, average=average,
                           average_decay=float(average_decay))
