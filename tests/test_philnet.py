"""PhilNet shapes, named features, parameter count; the model registry's errors."""

import jax
import jax.numpy as jnp
import pytest

from align_jax.errors import InputError
from align_jax.models import create_model


def test_philnet_shapes_features_and_parameter_count():
  model = create_model("philnet")
  x = jnp.ones((3, 32, 32, 3))
  variables = model.init({"params": jax.random.key(0)}, x, train=False)
  logits, features = model.apply(variables, x, train=False)
  assert logits.shape == (3, 10)
  assert {k: v.shape for k, v in features.items()} == {
      "block1": (3, 16, 16, 64), "block2": (3, 8, 8, 256), "block3": (3, 4, 4, 512),
      "penultimate": (3, 512), "logits": (3, 10)}
  assert jnp.allclose(features["penultimate"], features["block3"].mean(axis=(1, 2)))
  count = lambda tree: sum(p.size for p in jax.tree.leaves(tree))
  assert count(variables["params"]) == 1_574_698  # as stated in the docstring
  assert count(variables["batch_stats"]) == 1_984


def test_dropout_only_in_training():
  model = create_model("philnet", dropout_rate=0.9)
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  variables = model.init({"params": jax.random.key(0)}, x, train=False)
  run = lambda key: model.apply(variables, x, train=True, rngs={"dropout": key},
                                mutable=["batch_stats"])[0][0]
  assert not jnp.allclose(run(jax.random.key(1)), run(jax.random.key(2)))
  assert jnp.allclose(model.apply(variables, x, train=False)[0],
                      model.apply(variables, x, train=False)[0])


def test_unknown_model_and_bad_arguments_are_explained():
  with pytest.raises(InputError, match="Unknown model 'philnett'"):
    create_model("philnett")
  with pytest.raises(InputError, match="Bad arguments for model 'philnet'"):
    create_model("philnet", widths=3)
