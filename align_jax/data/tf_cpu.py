"""TensorFlow is only an input/logging library here: keep it off the accelerators JAX uses."""


def hide_gpus_from_tensorflow() -> None:
  """Makes TensorFlow see no GPU, so it never grabs accelerator memory from JAX."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TensorFlow already initialised its devices; nothing left to do.
    pass
