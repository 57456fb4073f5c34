"""align_jax: how closely do network representations match human visual perception?

The top-level package imports nothing heavy, so `align_jax.rsa` stays free of TensorFlow.
"""

import os

__version__ = "0.1.0"


def user_cache_dir() -> str:
  """align_jax's per-user cache (downloaded CIFAR-10H, shared noise ceilings):
  $ALIGN_JAX_CACHE_DIR, else $XDG_CACHE_HOME/align_jax, else ~/.cache/align_jax."""
  return os.environ.get("ALIGN_JAX_CACHE_DIR") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "align_jax")
