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


def l1_reconstruction(reconstruction: jnp.ndarray, images: jnp.ndarray) -> jnp.ndarray:
  """Sum of absolute errors per image: [b, h, w, c] pairs -> [b]."""
  return jnp.sum(jnp.abs(reconstruction - images), axis=(1, 2, 3))


def gaussian_kl(mean: jnp.ndarray, logvar: jnp.ndarray) -> jnp.ndarray:
  """KL(N(mean, exp(logvar)) || N(0, I)) in closed form, summed over latents: [b, k] -> [b]."""
  return 0.5 * jnp.sum(jnp.exp(logvar) + mean ** 2 - 1.0 - logvar, axis=-1)


def psnr(reconstruction: jnp.ndarray, images: jnp.ndarray) -> jnp.ndarray:
  """Peak signal-to-noise ratio in dB per image, for images on [0, 1]: -> [b]."""
  mse = jnp.mean((reconstruction - images) ** 2, axis=(1, 2, 3))
  return -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))
