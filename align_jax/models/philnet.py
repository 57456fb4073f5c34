"""PhilNet: the study's custom CNN (three conv blocks widening 32 -> 512 filters).

block 1: conv 32, conv 64, 2x2 max-pool; block 2: conv 128, conv 256, max-pool;
block 3: conv 512, max-pool; global average pool, Dropout 0.4, dense 10-way head.
Every conv is 3x3, 'SAME', without bias, followed by BatchNorm and ReLU.
Parameter count with a 10-class head: 1,574,698 trainable + 1,984 BatchNorm statistics.
"""

import functools

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from align_jax.models import layers

BLOCKS = ((32, 64), (128, 256), (512,))


class PhilNet(nn.Module):
  """`__call__(x [b, 32, 32, 3], train)` -> (logits [b, classes], features).

  features: block1 [b, 16, 16, 64], block2 [b, 8, 8, 256], block3 [b, 4, 4, 512],
  penultimate [b, 512] (pooled, before dropout and head), logits [b, classes].
  `bn_axis_name` makes BatchNorm average its statistics over that mapped axis in training
  (for pmap or shard_map users; the engine's jitted steps see the global batch and need none);
  `dtype` is the compute precision (parameters stay float32; logits are returned as float32);
  `layer_impl` picks where layers are rewritten for speed (models/layers.py).
  """
  num_classes: int = 10
  dropout_rate: float = 0.4
  bn_momentum: float = 0.9
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  layer_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool):
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, dtype=self.dtype,
                             momentum=self.bn_momentum, axis_name=self.bn_axis_name)
    conv3x3 = functools.partial(
        nn.Conv, kernel_size=(3, 3), padding="SAME", use_bias=False, dtype=self.dtype,
        conv_general_dilated=layers.conv_general_dilated_for(self.layer_impl))
    features = {}
    for block, widths in enumerate(BLOCKS, start=1):
      for width in widths:
        x = conv3x3(width)(x)
        x = nn.relu(norm()(x))
      x = layers.max_pool_2x2(x, self.layer_impl)
      features[f"block{block}"] = x
    x = jnp.mean(x, axis=(1, 2))
    features["penultimate"] = x
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)
    features["logits"] = logits
    return logits, features
