"""Feature extraction from a training workdir: batching, pooling, projections, errors."""

import numpy as np
import pytest

from align_jax import features
from align_jax.errors import InputError
from align_jax.training import loop
from tests import conftest


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory, fake_archive):
  """One epoch of tiny PhilNet, shared by the tests of this module (they only read it)."""
  root = str(tmp_path_factory.mktemp("features"))
  conftest.link_fake_archive(fake_archive, root)
  config = conftest.tiny_philnet(root)
  config.num_epochs = 1
  workdir = f"{root}/philnet"
  loop.train_and_evaluate(config, workdir)
  return workdir


def test_batched_extraction_equals_one_full_batch_forward_pass(trained_workdir):
  trained = features.load_trained(trained_workdir, "best")
  assert trained.step == 4 and trained.config.model == "philnet"
  images = np.random.default_rng(0).integers(0, 256, (25, 32, 32, 3), dtype=np.uint8)
  got = features.extract_features(trained, images, ["penultimate", "block3", "logits"],
                                  batch_size=10)
  x = features.input_pipeline.preprocess(images, trained.preprocessing, None)
  _, full = trained.model.apply(trained.variables, x, train=False)
  np.testing.assert_allclose(got["penultimate"], full["penultimate"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got["block3"], np.mean(full["block3"], axis=(1, 2)), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(got["logits"], full["logits"], rtol=1e-5, atol=1e-5)


def test_projection_bounds_dimensions_and_keeps_geometry(trained_workdir):
  trained = features.load_trained(trained_workdir, "latest")
  images = np.random.default_rng(1).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
  first = features.extract_features(trained, images, ["block1"], reduction="projection",
                                    max_dims=2048)["block1"]
  again = features.extract_features(trained, images, ["block1"], reduction="projection",
                                    max_dims=2048)["block1"]
  assert first.shape == (12, 2048)
  np.testing.assert_array_equal(first, again)
  x = features.input_pipeline.preprocess(images, trained.preprocessing, None)
  flat = np.asarray(trained.model.apply(trained.variables, x, train=False)[1]["block1"]).reshape(
      12, -1)
  np.testing.assert_allclose(np.linalg.norm(first, axis=1), np.linalg.norm(flat, axis=1),
                             rtol=0.15)


def test_unknown_layers_and_missing_workdirs_are_explained(trained_workdir, tmp_path):
  trained = features.load_trained(trained_workdir)
  with pytest.raises(InputError, match="no layer \\['latent_mean'\\]"):
    features.extract_features(trained, np.zeros((2, 32, 32, 3), np.uint8), ["latent_mean"])
  with pytest.raises(InputError, match="no config.json"):
    features.load_trained(str(tmp_path / "nothing"))
