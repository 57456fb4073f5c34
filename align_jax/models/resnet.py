"""ResNets (He et al., 2016) from one generic module; ResNet-18/34/50 are one-line partials.

Stems: "cifar" (3x3 stride-1 conv, no max-pool: the usual CIFAR recipe, 32x32 stage-1 maps) and
"imagenet" (7x7 stride-2 conv + 3x3 stride-2 max-pool: 8x8 stage-1 maps, much cheaper on CPU).
Parameter counts with a 10-class head: ResNet-50 23,520,842 ("cifar") / 23,528,522
("imagenet"), plus 53,120 BatchNorm statistics; ResNet-18 11,173,962 ("cifar").
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from align_jax.errors import InputError
from align_jax.models import layers


def _last_norm(norm: functools.partial, zero_init: bool) -> nn.Module:
  """The block's final BatchNorm; a zero scale makes the block start as the identity."""
  return norm(scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones)


def _add_shortcut(x, y, strides: int, norm: functools.partial, conv: functools.partial):
  """relu(shortcut(x) + y): identity, or a strided 1x1 conv + BN where the shape changes."""
  if x.shape != y.shape:
    x = norm()(conv(y.shape[-1], (1, 1), strides)(x))
  return nn.relu(x + y)


class _Block(nn.Module):
  """A residual block's settings: width, stride of its first strided conv, BatchNorm and
  convolution factories, and whether its last BatchNorm scale starts at zero."""
  filters: int
  strides: int
  norm: functools.partial
  conv: functools.partial
  zero_init_last: bool


class BasicBlock(_Block):
  """Two 3x3 convs (ResNet-18/34)."""

  @nn.compact
  def __call__(self, x):
    y = self.conv(self.filters, (3, 3), self.strides, padding="SAME")(x)
    y = nn.relu(self.norm()(y))
    y = self.conv(self.filters, (3, 3), padding="SAME")(y)
    return _add_shortcut(x, _last_norm(self.norm, self.zero_init_last)(y), self.strides,
                         self.norm, self.conv)


class BottleneckBlock(_Block):
  """1x1 reduce, 3x3, 1x1 expand to 4x filters (ResNet-50 and deeper)."""

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.norm()(self.conv(self.filters, (1, 1))(x)))
    y = self.conv(self.filters, (3, 3), self.strides, padding="SAME")(y)
    y = nn.relu(self.norm()(y))
    y = self.conv(self.filters * 4, (1, 1))(y)
    return _add_shortcut(x, _last_norm(self.norm, self.zero_init_last)(y), self.strides,
                         self.norm, self.conv)


BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}
STEMS = ("cifar", "imagenet")


class ResNet(nn.Module):
  """`__call__(x [b, 32, 32, 3], train)` -> (logits, features).

  features: stem, stage1..stage4 (spatial maps), penultimate [b, 2048 or 512] (pooled),
  logits [b, classes]. `dtype` is the compute precision (parameters stay float32; logits are
  returned as float32); `layer_impl` picks where convolutions are rewritten for
  speed (models/layers.py).
  """
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block: str = "bottleneck"
  num_classes: int = 10
  width: int = 64
  stem: str = "cifar"
  zero_init_last_bn: bool = True
  bn_momentum: float = 0.9
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  layer_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool):
    if self.stem not in STEMS or self.block not in BLOCKS:
      raise InputError(f"stem must be one of {STEMS} and block one of {sorted(BLOCKS)}; "
                       f"got stem={self.stem!r}, block={self.block!r}.")
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, dtype=self.dtype,
                             momentum=self.bn_momentum, axis_name=self.bn_axis_name)
    conv = functools.partial(
        nn.Conv, use_bias=False, dtype=self.dtype,
        conv_general_dilated=layers.conv_general_dilated_for(self.layer_impl))
    features = {}
    if self.stem == "cifar":
      x = conv(self.width, (3, 3), padding="SAME")(x)
      x = nn.relu(norm()(x))
    else:
      x = conv(self.width, (7, 7), (2, 2), padding=[(3, 3), (3, 3)])(x)
      x = nn.relu(norm()(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    features["stem"] = x
    for stage, blocks in enumerate(self.stage_sizes):
      for i in range(blocks):
        strides = 2 if stage > 0 and i == 0 else 1
        x = BLOCKS[self.block](self.width * 2 ** stage, strides, norm, conv,
                               self.zero_init_last_bn)(x)
      features[f"stage{stage + 1}"] = x
    x = jnp.mean(x, axis=(1, 2))
    features["penultimate"] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)
    features["logits"] = logits
    return logits, features


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block="basic")
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="basic")
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck")
