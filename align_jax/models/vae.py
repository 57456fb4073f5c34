"""Convolutional VAE with an explicit-key reparameterization.

Encoder: strided 4x4 convs (32 -> 16 -> 8 -> 4 pixels) -> flatten -> dense heads for the mean
and log-variance of a diagonal Gaussian over `latent_dim` (256) dimensions. Decoder: dense ->
[4, 4, C] -> transposed convs back to 32x32x3 -> sigmoid. Images are on [0, 1].
Parameter count (defaults): 1,906,499.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from align_jax.models import layers


def reparameterize(mean: jnp.ndarray, logvar: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
  """z = mean + exp(logvar / 2) * eps, eps ~ N(0, I) drawn from `key` (same key, same z)."""
  return mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)


class VAE(nn.Module):
  """`__call__(x, train, key=None)` -> (reconstruction [b, 32, 32, 3], features).

  features: latent_mean, latent_logvar [b, latent_dim], reconstruction. With `key`, the
  decoder sees a sample z; without, the posterior mean (deterministic reconstructions).
  `dtype` is the compute precision of the layers (parameters, the latent statistics and the
  reconstruction stay float32).
  """
  latent_dim: int = 256
  widths: Sequence[int] = (32, 64, 128)
  bn_axis_name: str | None = None  # accepted for the engine's uniform API; no BatchNorm here
  dtype: Any = jnp.float32
  layer_impl: str = "auto"  # where convolutions are rewritten for speed (models/layers.py)

  def setup(self):
    self.encoder_convs = [
        nn.Conv(w, (4, 4), (2, 2), padding="SAME", dtype=self.dtype,
                conv_general_dilated=layers.conv_general_dilated_for(self.layer_impl))
        for w in self.widths]
    self.mean_head = nn.Dense(self.latent_dim, dtype=self.dtype)
    self.logvar_head = nn.Dense(self.latent_dim, dtype=self.dtype)
    self.decoder_input = nn.Dense(4 * 4 * self.widths[-1], dtype=self.dtype)
    self.decoder_convs = [layers.ConvTranspose2x(w, dtype=self.dtype, impl=self.layer_impl)
                          for w in tuple(self.widths[::-1][1:]) + (3,)]

  def encode(self, x):
    """x [b, 32, 32, 3] on [0, 1] -> (posterior mean, log-variance), each [b, latent_dim]."""
    for conv in self.encoder_convs:
      x = nn.leaky_relu(conv(x), 0.2)
    x = x.reshape(x.shape[0], -1)
    return (self.mean_head(x).astype(jnp.float32),
            self.logvar_head(x).astype(jnp.float32))

  def decode(self, z):
    """z [b, latent_dim] -> images [b, 32, 32, 3] on (0, 1)."""
    x = nn.leaky_relu(self.decoder_input(z), 0.2).reshape(z.shape[0], 4, 4, self.widths[-1])
    for conv in self.decoder_convs[:-1]:
      x = nn.leaky_relu(conv(x), 0.2)
    return nn.sigmoid(self.decoder_convs[-1](x).astype(jnp.float32))

  def __call__(self, x, train: bool = False, key: jax.Array | None = None):
    del train  # no dropout or BatchNorm: train and eval differ only by the sampled z
    mean, logvar = self.encode(x)
    z = mean if key is None else reparameterize(mean, logvar, key)
    reconstruction = self.decode(z)
    return reconstruction, {"latent_mean": mean, "latent_logvar": logvar,
                            "reconstruction": reconstruction}
