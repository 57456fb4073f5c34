"""TrainState with BatchNorm statistics, and the optax AdamW + cosine optimiser from config."""

from typing import Any

import jax
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
  batch_stats: Any = None


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  """Linear warm-up for `warmup_epochs`, then cosine decay to `lr * final_lr_fraction`."""
  total = config.num_epochs * steps_per_epoch
  warmup = int(round(config.warmup_epochs * steps_per_epoch))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0 if warmup else config.learning_rate, peak_value=config.learning_rate,
      warmup_steps=warmup, decay_steps=max(total, warmup + 1),
      end_value=config.learning_rate * config.final_lr_fraction)


def decay_mask(params) -> Any:
  """Weight decay for kernels only: BatchNorm scales/offsets and biases (ndim <= 1) are exempt."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  adamw = optax.adamw(learning_rate_schedule(config, steps_per_epoch), b1=config.adam_b1,
                      b2=config.adam_b2, weight_decay=config.weight_decay, mask=decay_mask)
  if config.grad_clip_norm:
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), adamw)
  return adamw


def create_train_state(variables: dict, apply_fn, tx: optax.GradientTransformation) -> TrainState:
  """A fresh state from model `variables` ({'params': ..., optionally 'batch_stats': ...})."""
  return TrainState.create(apply_fn=apply_fn, params=variables["params"], tx=tx,
                           batch_stats=variables.get("batch_stats", {}))
