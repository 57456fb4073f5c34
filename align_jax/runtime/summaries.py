"""TensorBoard event files without TensorFlow: scalars and images for training and alignment.

clu's metric writers (and its periodic actions) import TensorFlow, which costs seconds at every
start and is missing on GPU machines set up for JAX. The `tensorboard` package ships a
TF-free event-file writer and the protocol buffers; this wraps them in the two calls align_jax
needs. Nothing is logged here: the training loop prints its own one-line summaries. Only
process 0 of a multi-host run writes.
"""

import io
import sys
import time
import types

import jax
import numpy as np
from matplotlib import image as mpl_image

# tensorboard.compat imports TensorFlow whenever it is installed, unless the module
# `tensorboard.compat.notf` exists: its own switch (see tensorboard/compat/__init__.py) to use
# the TF-free stub, which writes local event files the same way.
sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top,wrong-import-position
from tensorboard.summary.writer.event_file_writer import EventFileWriter  # pylint: disable=g-import-not-at-top,wrong-import-position


class TensorBoardWriter:
  """Writes `events.out.tfevents.*` into `logdir` (scalar and image summaries)."""

  def __init__(self, logdir: str):
    self._writer = EventFileWriter(logdir) if jax.process_index() == 0 else None

  def _add(self, step: int, values: list[summary_pb2.Summary.Value]) -> None:
    if self._writer is not None and values:
      self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                             summary=summary_pb2.Summary(value=values)))

  def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
    self._add(step, [summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
                     for tag, value in scalars.items()])

  def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
    """images: tag -> [h, w, c] (or [1, h, w, c]) floats on [0, 1], stored as PNG."""
    values = []
    for tag, image in images.items():
      image = np.clip(np.asarray(image, np.float32).reshape(np.shape(image)[-3:]), 0, 1)
      png = io.BytesIO()
      mpl_image.imsave(png, image, format="png")
      values.append(summary_pb2.Summary.Value(tag=tag, image=summary_pb2.Summary.Image(
          height=image.shape[0], width=image.shape[1], colorspace=image.shape[2],
          encoded_image_string=png.getvalue())))
    self._add(step, values)

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
