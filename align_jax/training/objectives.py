"""Per-example losses. Targets are hard labels [b] or label distributions [b, classes]."""

import jax.numpy as jnp
import optax


def cross_entropy(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
  """logits [b, k]; targets int [b] or probabilities [b, k] (e.g. CIFAR-10H) -> [b]."""
  if targets.ndim == logits.ndim:
    return optax.softmax_cross_entropy(logits, targets)
  return optax.softmax_cross_entropy_with_integer_labels(logits, targets)


def masked_mean(values: jnp.ndarray, mask: jnp.ndarray | None) -> jnp.ndarray:
  """Mean of `values` [b] over the examples where `mask` [b] is true (all when None)."""
  if mask is None:
    return jnp.mean(values)
  mask = mask.astype(values.dtype)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)
