"""Model constructors by name. Every model returns (output, {layer name: activation}).

Classifiers return logits and name at least `penultimate` and `logits`; the VAE returns its
reconstruction and names `latent_mean`.
"""

from align_jax.errors import InputError
from align_jax.models.philnet import PhilNet
from align_jax.models.resnet import ResNet18, ResNet34, ResNet50
from align_jax.models.vae import VAE

MODELS = {
    "philnet": PhilNet,
    "resnet18": ResNet18,
    "resnet34": ResNet34,
    "resnet50": ResNet50,
    "vae": VAE,
}


def create_model(name: str, **kwargs):
  """Builds model `name` with constructor keyword arguments `kwargs`."""
  if name not in MODELS:
    raise InputError(f"Unknown model {name!r}; choose one of {sorted(MODELS)}.")
  try:
    return MODELS[name](**kwargs)
  except TypeError as e:
    raise InputError(f"Bad arguments for model {name!r}: {e}") from e
