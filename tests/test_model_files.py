"""Bring-your-own model: a .npz of named layers through the whole alignment run, with an
independent recomputation of its numbers; and clear errors for bad files."""

import json
import os

import numpy as np
import pytest
import scipy.spatial.distance as ssd
import scipy.stats

from align_jax.errors import InputError
from align_jax.pipeline import align, representations
from experiments.configs import align as align_configs

N = 300  # images aligned


def _strong_model(human_probs: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
  """A model whose test-set outputs follow the humans through noise: probs = softmax(log(human
  probs + 0.05) + noise); a spatial layer [n, 2, 2, 6] that carries the same signal."""
  rng = np.random.default_rng(seed)
  logits = np.log(human_probs + 0.05) + 0.5 * rng.standard_normal(human_probs.shape)
  probs = np.exp(logits - logits.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  spatial = (np.concatenate([logits[:, :6], rng.standard_normal((len(logits), 6))], 1)
             .reshape(-1, 2, 1, 6).repeat(2, axis=2))
  return {"probs": probs, "spatial": spatial.astype(np.float32)}


def test_a_model_file_runs_the_alignment_and_its_numbers_match_scipy(offline_data_dir, tmp_path):
  human = np.load(os.path.join(offline_data_dir, "cifar10h", "cifar10h-probs.npy"))
  arrays = _strong_model(human)
  path = str(tmp_path / "strong.npz")
  np.savez(path, **arrays)
  config = align_configs.get_config("quick")
  config.update(dict(models=f"strong={path}", data_dir=offline_data_dir, num_images=N,
                     n_bootstrap=3, n_permutations=3, n_ceiling_splits=2, n_kappa_resamples=10,
                     figure_images=30))
  results = align.run_alignment(config, str(tmp_path / "out"))

  h = human[:N]
  rows = {(r["layer"], r["method"]): r for r in results["rsa"]}
  pooled = arrays["spatial"][:N].mean(axis=(1, 2))
  for layer, feats in (("probs", arrays["probs"][:N]), ("spatial", pooled)):
    expected = scipy.stats.spearmanr(ssd.pdist(feats, "correlation"),
                                     ssd.pdist(h, "correlation")).statistic
    # float32 RDMs against scipy's float64 distances: <= 6e-5 (docs/rsa_statistics.md)
    assert rows[layer, "spearman"]["estimate"] == pytest.approx(expected, abs=1e-4), layer
  assert rows["probs", "spearman"]["estimate"] > 0.3  # a strong model, as built
  behaviour = results["behaviour"]["strong"]
  ce = np.mean(-np.sum(h * np.log(np.clip(arrays["probs"][:N], 1e-12, 1)), axis=1))
  assert behaviour["human_cross_entropy"] == pytest.approx(ce, abs=1e-9)
  labels = np.fromfile(os.path.join(offline_data_dir, "cifar-10-batches-bin", "test_batch.bin"),
                       np.uint8).reshape(-1, 3073)[:N, 0]
  assert behaviour["accuracy"] == pytest.approx(np.mean(arrays["probs"][:N].argmax(1) == labels))
  assert results["models"]["strong"]["source"] == f"file:{path}"
  report = open(os.path.join(tmp_path, "out", "report.md")).read()
  assert f"arrays from the model file `{path}`" in report
  saved = json.load(open(os.path.join(tmp_path, "out", "results.json")))
  assert saved["statistics"]["ci_source"] == "images+annotators"
  assert saved["statistics"]["ci_interval"] == "centred"


@pytest.mark.parametrize("arrays,message", [
    ({"probs": np.full((9000, 10), 0.1)}, "has 9,000 rows; a model file holds one row per"),
    ({"probs": np.full((10_000, 10), 0.2)}, "must hold probability rows"),
    ({"x": np.where(np.arange(10_000)[:, None] == 7, np.nan, np.ones((10_000, 3)))},
     r"NaN or inf in rows \[7\]"),
    ({"x": np.array([{"a": 1}] * 10_000, dtype=object)}, "not a plain numeric .npz"),
])
def test_bad_model_files_are_explained(tmp_path, arrays, message):
  path = str(tmp_path / "model.npz")
  np.savez(path, **arrays)
  with pytest.raises(InputError, match=message):
    representations.from_file("m", path, 100)


def test_model_file_entries_are_checked(tmp_path):
  with pytest.raises(InputError, match="no such model file"):
    representations.parse_models(f"m={tmp_path}/missing.npz")
