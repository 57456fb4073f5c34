"""The backend policy: every choice that depends on where the computation runs, in one place.

- Layers (models/layers.py): under `layer_impl='auto'` convolutions, transposed convolutions
  and 2x2 max-pools are rewritten on CPUs only, where XLA's own layers are slow at their
  gradients; GPUs and TPUs keep XLA's (the rewrites were never measured faster there).
  'rewritten' and 'xla' force either choice.
- RSA (rsa/): numpy/BLAS kernels on the host where the backend is a CPU (XLA:CPU's sorts are
  far slower than numpy's); jitted device kernels on accelerators.
- Feature precision (features.py): matrix products of feature extraction in full float32
  ('highest') on accelerators, whose defaults may use TF32 or bfloat16 passes, so that GPU
  features match CPU features; CPUs compute float32 products in full precision anyway.
- Host memory (runtime/host_memory.py): freed host memory is kept for reuse on CPUs only, since
  the reason for it is XLA:CPU's per-step temporary block. This is decided before JAX's runtime
  starts (glibc's settings must precede its threads), so it reads the platform JAX will pick
  without starting it (`expected_platform`).

The measurements behind each choice are in docs/performance.md and docs/rsa_statistics.md.
"""

import importlib.metadata
import importlib.util
import os
import pkgutil

from align_jax.errors import InputError
from align_jax.runtime import names

_ACCELERATOR_NAMES = {"cuda": "gpu", "rocm": "gpu", "gpu": "gpu", "tpu": "tpu"}


def platform() -> str:
  """The default backend's platform: 'cpu', 'gpu' or 'tpu' (this starts JAX's runtime)."""
  import jax  # pylint: disable=g-import-not-at-top  (expected_platform must not import it)
  return jax.default_backend()


def expected_platform() -> str:
  """The platform JAX will pick, read without starting its runtime: the first entry of
  $JAX_PLATFORMS where set; else 'tpu' or 'gpu' where an accelerator's runtime or JAX plugin
  is installed; else 'cpu'. (A GPU plugin on a machine without a GPU reads as 'gpu': the cost
  of that mistake is only the host-memory setting.)"""
  chosen = os.environ.get("JAX_PLATFORMS", "").split(",")[0].strip().lower()
  if chosen:
    return _ACCELERATOR_NAMES.get(chosen, chosen)
  if importlib.util.find_spec("libtpu") is not None:
    return "tpu"
  plugins = [entry.name for entry in importlib.metadata.entry_points(group="jax_plugins")]
  namespace = importlib.util.find_spec("jax_plugins")  # plugins as modules of that namespace
  if namespace is not None and namespace.submodule_search_locations:
    plugins += [m.name for m in pkgutil.iter_modules(namespace.submodule_search_locations)]
  return next((_ACCELERATOR_NAMES[kind] for name in plugins for kind in _ACCELERATOR_NAMES
               if kind in name.lower()), "cpu")


def rewrites_layers(impl: str) -> bool:
  """Whether models/layers.py replaces XLA's layers under policy `impl` ('auto': on CPUs)."""
  if impl not in names.LAYER_IMPLS:
    raise InputError(f"layer_impl must be one of {names.LAYER_IMPLS}; got {impl!r}.")
  return impl == "rewritten" or (impl == "auto" and platform() == "cpu")


def rsa_on_host() -> bool:
  """Whether the RSA kernels run in numpy/BLAS on the host (CPUs) rather than jitted on the
  device (GPUs, TPUs)."""
  return platform() == "cpu"


def feature_precision() -> str | None:
  """jax.default_matmul_precision for feature extraction: 'highest' on accelerators, None (the
  default, already full float32) on CPUs."""
  return None if platform() == "cpu" else "highest"


def retains_host_memory(requested: bool = True) -> bool:
  """Whether to keep freed host memory for reuse: where asked for and JAX will run on a CPU."""
  return requested and expected_platform() == "cpu"
