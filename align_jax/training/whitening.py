"""Whitening initialisation of the convolution that reads the image.

The first convolution starts as a patch-whitening filter bank: the principal directions of the
training images' patches (of the kernel's size), each scaled by 1 / sqrt(eigenvalue + eps), as
+/- pairs so that a ReLU after it keeps both signs. Its outputs start decorrelated and of unit
variance, which short schedules otherwise spend their first epoch learning. The layer keeps its
shape and stays trainable.
"""

import jax
import numpy as np

from align_jax.errors import InputError

WHITENING_IMAGES = 5000  # training images whose patches give the statistics
EPS = 5e-4  # added to the eigenvalues: the weakest directions are not blown up into noise


def patch_covariance(images: np.ndarray, size: tuple[int, int],
                     chunk: int = 500) -> tuple[np.ndarray, np.ndarray]:
  """(mean, covariance) of every valid size[0] x size[1] patch of float `images` [n, h, w, c],
  each patch flattened in (row, column, channel) order, as a conv kernel's first three axes."""
  kh, kw = size
  total, first, second = 0, 0.0, 0.0
  for start in range(0, len(images), chunk):
    x = np.asarray(images[start:start + chunk], np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kh * kw * x.shape[-1])
    total += len(patches)
    first = first + patches.sum(0)
    second = second + patches.T @ patches
  mean = first / total
  return mean, second / total - np.outer(mean, mean)


def whitening_kernel(images: np.ndarray, shape: tuple[int, ...], eps: float = EPS) -> np.ndarray:
  """A conv kernel of `shape` (kh, kw, c, width; width even) whose width / 2 leading patch
  directions and their negatives whiten `images`' patches."""
  kh, kw, channels, width = shape
  if width % 2 or width > 2 * kh * kw * channels:
    raise InputError(f"A whitening initialisation needs an even width of at most "
                     f"{2 * kh * kw * channels} filters; this convolution has {width}.")
  if images.shape[-1] != channels:
    raise InputError(f"Images with {images.shape[-1]} channels cannot initialise a convolution "
                     f"that reads {channels}.")
  _, covariance = patch_covariance(images, (kh, kw))
  eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
  leading = slice(len(eigenvalues) - width // 2, None)
  filters = eigenvectors[:, leading] / np.sqrt(eigenvalues[leading] + eps)
  filters = filters[:, ::-1]  # the strongest direction first
  return np.concatenate([filters, -filters], axis=1).reshape(shape).astype(np.float32)


def image_kernel_path(params) -> tuple:
  """The tree path of the one convolution kernel that reads the image (3 input channels)."""
  found = [path for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
           if leaf.ndim == 4 and leaf.shape[2] == 3 and path[-1].key == "kernel"]
  if len(found) != 1:
    raise InputError(f"whitening_init needs exactly one convolution reading the 3-channel "
                     f"image; this model has {len(found)}.")
  return found[0]


def initialise(variables: dict, images: np.ndarray) -> dict:
  """`variables` with the image-reading kernel set to whitening_kernel of `images` (float,
  preprocessed as the model sees them)."""
  target = image_kernel_path(variables["params"])

  def replace(path, leaf):
    return whitening_kernel(images, leaf.shape) if path == target else leaf

  params = jax.tree_util.tree_map_with_path(replace, variables["params"])
  return dict(variables, params=params)
