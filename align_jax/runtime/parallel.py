"""Data parallelism over every device of every process, in one place.

One `Mesh` holds every device of every process along one axis, `DATA`. The train state is
replicated over it and every batch is split along its first (example) axis, so a jitted step
sees the global batch: gradients and BatchNorm statistics are those of the whole batch, exactly
what one device computes on it. Each process feeds only the rows its own devices hold
(`process_rows`), and `global_batch` makes them one global array.

Batches of inference (evaluation, feature extraction) are padded to a multiple of the device
count and masked, so any batch size works on any device count; a training batch must split
evenly, and `check_batch_size` says how when it does not.
"""

import functools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from align_jax.errors import InputError

DATA = "data"  # the mesh axis the batch is split along


@functools.cache
def mesh() -> Mesh:
  """Every device of every process along DATA (process by process, as jax.devices() lists)."""
  return Mesh(np.asarray(jax.devices()), (DATA,))


def replicated() -> NamedSharding:
  return NamedSharding(mesh(), PartitionSpec())


def batch_split() -> NamedSharding:
  return NamedSharding(mesh(), PartitionSpec(DATA))


def check_batch_size(batch_size: int, field: str = "batch_size") -> None:
  """InputError unless `batch_size` splits evenly over the devices, naming the field, the
  device count and the nearest valid values."""
  devices = jax.device_count()
  if batch_size > 0 and batch_size % devices == 0:
    return
  below = batch_size // devices * devices
  valid = [v for v in (below, below + devices) if v > 0]
  raise InputError(f"{field}={batch_size} does not split over the {devices} devices of this run "
                   f"({jax.process_count()} process(es)); use a multiple of {devices}, e.g. "
                   f"{' or '.join(str(v) for v in valid)}.")


def padded_size(batch_size: int) -> int:
  """The smallest multiple of the device count that holds `batch_size` examples."""
  devices = jax.device_count()
  return -(-batch_size // devices) * devices


def process_rows(global_rows: int) -> slice:
  """The rows of a global batch of `global_rows` that this process's devices hold."""
  indices = batch_split().addressable_devices_indices_map((global_rows,)).values()
  starts = [index[0].start or 0 for index in indices]
  stops = [global_rows if index[0].stop is None else index[0].stop for index in indices]
  # the mesh lists devices process by process, so a process's rows are one run of the batch
  assert max(stops) - min(starts) == sum(b - a for a, b in zip(starts, stops)), indices
  return slice(min(starts), max(stops))


def global_batch(rows: dict[str, np.ndarray], global_rows: int) -> dict[str, jax.Array]:
  """This process's `rows` of a batch (process_rows) as one global array per name, split
  over every device along DATA."""
  sharding = batch_split()
  return {name: jax.make_array_from_process_local_data(sharding, value,
                                                       (global_rows, *value.shape[1:]))
          for name, value in rows.items()}


def put_replicated(tree):
  """A pytree (the same on every process; PRNG keys included) as global arrays replicated on
  every device."""
  sharding = replicated()

  def leaf(x):
    if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
      return jax.random.wrap_key_data(leaf(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    return jax.make_array_from_process_local_data(sharding, np.asarray(x), np.shape(x))

  return jax.tree.map(leaf, tree)


def local_copy(tree):
  """This process's copy of replicated global arrays, left on its first device (no transfer,
  so the next step is dispatched before this one's values are read)."""
  return jax.tree.map(lambda x: x.addressable_data(0), tree)


def to_host(tree):
  """A pytree of replicated global arrays as numpy arrays (any process's own copy)."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)
