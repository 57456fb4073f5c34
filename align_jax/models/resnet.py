"""ResNets (He et al., 2016) from one generic module; ResNet-18/34/50 are one-line partials.

Stems: "cifar" (3x3 stride-1 conv, no max-pool: the usual CIFAR recipe, 32x32 stage-1 maps) and
"imagenet" (7x7 stride-2 conv + 3x3 stride-2 max-pool: 8x8 stage-1 maps, much cheaper on CPU).
Parameter counts with a 10-class head: ResNet-50 23,520,842 ("cifar") / 23,528,522
("imagenet"), plus 53,120 BatchNorm statistics; ResNet-18 11,173,962 ("cifar").
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from align_jax.errors import InputError


def _last_norm(norm: functools.partial, zero_init: bool) -> nn.Module:
  """The block's final BatchNorm; a zero scale makes the block start as the identity."""
  return norm(scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones)


def _add_shortcut(x, y, strides: int, norm: functools.partial):
  """relu(shortcut(x) + y): identity, or a strided 1x1 conv + BN where the shape changes."""
  if x.shape != y.shape:
    x = norm()(nn.Conv(y.shape[-1], (1, 1), strides, use_bias=False)(x))
  return nn.relu(x + y)


class _Block(nn.Module):
  """A residual block's settings: width, stride of its first strided conv, BatchNorm factory,
  and whether its last BatchNorm scale starts at zero."""
  filters: int
  strides: int
  norm: functools.partial
  zero_init_last: bool


class BasicBlock(_Block):
  """Two 3x3 convs (ResNet-18/34)."""

  @nn.compact
  def __call__(self, x):
    y = nn.Conv(self.filters, (3, 3), self.strides, padding="SAME", use_bias=False)(x)
    y = nn.relu(self.norm()(y))
    y = nn.Conv(self.filters, (3, 3), padding="SAME", use_bias=False)(y)
    return _add_shortcut(x, _last_norm(self.norm, self.zero_init_last)(y), self.strides,
                         self.norm)


class BottleneckBlock(_Block):
  """1x1 reduce, 3x3, 1x1 expand to 4x filters (ResNet-50 and deeper)."""

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.norm()(nn.Conv(self.filters, (1, 1), use_bias=False)(x)))
    y = nn.Conv(self.filters, (3, 3), self.strides, padding="SAME", use_bias=False)(y)
    y = nn.relu(self.norm()(y))
    y = nn.Conv(self.filters * 4, (1, 1), use_bias=False)(y)
    return _add_shortcut(x, _last_norm(self.norm, self.zero_init_last)(y), self.strides,
                         self.norm)


BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}
STEMS = ("cifar", "imagenet")


class ResNet(nn.Module):
  """`__call__(x [b, 32, 32, 3], train)` -> (logits, features).

  features: stem, stage1..stage4 (spatial maps), penultimate [b, 2048 or 512] (pooled),
  logits [b, classes].
  """
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block: str = "bottleneck"
  num_classes: int = 10
  width: int = 64
  stem: str = "cifar"
  zero_init_last_bn: bool = True
  bn_momentum: float = 0.9
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool):
    if self.stem not in STEMS or self.block not in BLOCKS:
      raise InputError(f"stem must be one of {STEMS} and block one of {sorted(BLOCKS)}; "
                       f"got stem={self.stem!r}, block={self.block!r}.")
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=self.bn_momentum, axis_name=self.bn_axis_name)
    features = {}
    if self.stem == "cifar":
      x = nn.Conv(self.width, (3, 3), padding="SAME", use_bias=False)(x)
      x = nn.relu(norm()(x))
    else:
      x = nn.Conv(self.width, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], use_bias=False)(x)
      x = nn.relu(norm()(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    features["stem"] = x
    for stage, blocks in enumerate(self.stage_sizes):
      for i in range(blocks):
        strides = 2 if stage > 0 and i == 0 else 1
        x = BLOCKS[self.block](self.width * 2 ** stage, strides, norm,
                               self.zero_init_last_bn)(x)
      features[f"stage{stage + 1}"] = x
    x = jnp.mean(x, axis=(1, 2))
    features["penultimate"] = x
    logits = nn.Dense(self.num_classes)(x)
    features["logits"] = logits
    return logits, features


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block="basic")
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="basic")
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck")
