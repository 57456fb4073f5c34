"""Model constructors by name. Classifiers return (logits, {layer name: activation})."""

from align_jax.errors import InputError
from align_jax.models.philnet import PhilNet

MODELS = {
    "philnet": PhilNet,
}


def create_model(name: str, **kwargs):
  """Builds model `name` with constructor keyword arguments `kwargs`."""
  if name not in MODELS:
    raise InputError(f"Unknown model {name!r}; choose one of {sorted(MODELS)}.")
  try:
    return MODELS[name](**kwargs)
  except TypeError as e:
    raise InputError(f"Bad arguments for model {name!r}: {e}") from e
