"""align_jax: how closely do network representations match human visual perception?

The top-level package imports nothing heavy, so `align_jax.rsa` stays free of TensorFlow.
"""

__version__ = "0.1.0"
