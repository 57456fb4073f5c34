"""Reuse that can be trusted: damaged cache entries and changed RDMs are recomputed with a
warning, reruns never share a file with the run before, and the noise ceiling is computed once
for every output folder through the per-user cache."""

import concurrent.futures
import json
import logging
import os
import threading

import numpy as np
import pytest

import align_jax
from align_jax.pipeline import align, cache
from experiments.configs import align as align_configs

N = 80  # images aligned


def _model_file(folder, human: np.ndarray, seed: int) -> str:
  """A model file whose probabilities follow the humans through noise, and a 6-d layer."""
  rng = np.random.default_rng(seed)
  logits = np.log(human + 0.05) + rng.standard_normal(human.shape)
  path = os.path.join(folder, f"model{seed}.npz")
  np.savez(path, logits=logits, hidden=np.concatenate(
      [logits[:, :3], rng.standard_normal((len(logits), 3))], 1).astype(np.float32))
  return path


@pytest.fixture(scope="module")
def model_files(offline_data_dir, tmp_path_factory):
  human = np.load(os.path.join(offline_data_dir, "cifar10h", "cifar10h-probs.npy"))
  folder = str(tmp_path_factory.mktemp("models"))
  return [_model_file(folder, human, seed) for seed in (0, 1)]


def _config(data_dir: str, model: str, cache_dir: str):
  config = align_configs.get_config("quick")
  config.update(dict(models=f"mine={model}", data_dir=data_dir, num_images=N, n_bootstrap=3,
                     n_permutations=3, n_ceiling_splits=2, n_kappa_resamples=10,
                     figure_images=20, cache_dir=cache_dir))
  return config


def _numbers(results: dict) -> dict:
  """results.json's content without what differs between two runs of the same numbers."""
  found = json.loads(json.dumps(results))
  del found["provenance"]["run_id"], found["config"]["cache_dir"]
  return found


def _warnings(caplog) -> list[str]:
  return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_unreadable_cache_entries_are_recomputed_with_a_warning(offline_data_dir, model_files,
                                                                tmp_path, caplog):
  config = _config(offline_data_dir, model_files[0], cache_dir="")
  out = str(tmp_path / "out")
  first = align.run_alignment(config, out)
  folder = os.path.join(out, cache.CACHE_DIR)
  entries = sorted(os.listdir(folder))
  assert {e.rsplit(".", 1)[1] for e in entries} == {"json", "npz"}, entries
  for entry in entries:  # every entry cut short
    path = os.path.join(folder, entry)
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)
  with caplog.at_level(logging.WARNING):
    again = align.run_alignment(config, out)
  assert _numbers(again) == _numbers(first)
  warned = _warnings(caplog)
  for entry in entries:
    assert any(os.path.join(folder, entry) in w and "recomputing" in w for w in warned), entry
    assert os.path.isfile(os.path.join(folder, entry + ".damaged"))
  caplog.clear()
  assert _numbers(align.run_alignment(config, out)) == _numbers(first)  # stored anew
  assert not _warnings(caplog)


def test_an_entry_whose_content_changed_is_recomputed(tmp_path, caplog):
  store = cache.Cache(str(tmp_path))
  stored = store.json("k1", lambda: {"value": 0.25})
  path = str(tmp_path / "k1.json")
  with open(path) as f:
    entry = json.load(f)
  entry["value"]["value"] = 0.5  # still valid JSON, no longer what was written
  with open(path, "w") as f:
    json.dump(entry, f)
  arrays = {"a": np.arange(6.0)}
  store.arrays("k2", lambda: arrays)
  with np.load(tmp_path / "k2.npz") as f:
    members = dict(f)
  members["a"] = members["a"] + 1  # a well-formed .npz whose array is not the one stored
  np.savez(tmp_path / "k2.npz", **members)
  with caplog.at_level(logging.WARNING):
    assert store.json("k1", lambda: {"value": 0.25}) == stored
    np.testing.assert_array_equal(store.arrays("k2", lambda: arrays)["a"], arrays["a"])
  assert sum("does not match its checksum" in w for w in _warnings(caplog)) == 2


def test_an_entry_written_by_another_version_is_not_used(tmp_path, monkeypatch, caplog):
  store = cache.Cache(str(tmp_path))
  monkeypatch.setattr(align_jax, "__version__", "0.0.1")
  store.json("k", lambda: {"ceiling": 1.0})
  monkeypatch.undo()
  with caplog.at_level(logging.WARNING):
    assert store.json("k", lambda: {"ceiling": 2.0}) == {"ceiling": 2.0}
  assert any("written by align_jax 0.0.1" in w for w in _warnings(caplog))


def test_an_rdm_changed_in_place_is_recomputed_and_never_shared(offline_data_dir, model_files,
                                                                tmp_path, caplog):
  config = _config(offline_data_dir, model_files[0], cache_dir="")
  out = str(tmp_path / "out")
  first = align.run_alignment(config, out)
  rdm_path = os.path.join(out, "rdms", "mine__hidden.npy")
  kept = str(tmp_path / "kept.npy")
  os.link(rdm_path, kept)  # the first run's file, whatever happens to its name
  rdm = np.load(rdm_path, mmap_mode="r+")
  rdm[: len(rdm) // 4] = 0.5  # values changed in place: size and header unchanged
  rdm.flush()
  del rdm
  with caplog.at_level(logging.WARNING):
    again = align.run_alignment(config, out)
  assert _numbers(again) == _numbers(first)
  assert any(rdm_path in w and "changed since it was written" in w for w in _warnings(caplog))
  caplog.clear()
  np.save(kept, np.load(kept))  # the damage repaired under the old name only
  third = align.run_alignment(config, out)  # reuses the (recomputed) RDM of the second run
  assert _numbers(third) == _numbers(first) and not _warnings(caplog)
  assert not os.path.samefile(rdm_path, kept)  # the new run's RDM is its own file
  with open(rdm_path.replace(".npy", ".json")) as f:
    assert json.load(f)["sha256"] == cache.hashlib.sha256(open(rdm_path, "rb").read()).hexdigest()


def test_output_folders_share_one_noise_ceiling(offline_data_dir, model_files, tmp_path,
                                                monkeypatch, caplog):
  user_cache = str(tmp_path / "user_cache")
  align.run_alignment(_config(offline_data_dir, model_files[0], user_cache),
                      str(tmp_path / "first"))
  assert os.listdir(os.path.join(user_cache, cache.SHARED_SUBDIR))

  def recomputed(*args, **kwargs):
    raise AssertionError("the noise ceiling was computed again")

  monkeypatch.setattr(align.rsa, "noise_ceilings", recomputed)
  with caplog.at_level(logging.INFO):
    shared = align.run_alignment(_config(offline_data_dir, model_files[1], user_cache),
                                 str(tmp_path / "second"))
  assert any(m.startswith("Noise ceiling: reused from " + user_cache)
             for m in (r.getMessage() for r in caplog.records))
  monkeypatch.undo()
  alone = align.run_alignment(_config(offline_data_dir, model_files[1], ""),
                              str(tmp_path / "alone"))
  assert _numbers(shared) == _numbers(alone)


def test_the_report_says_where_each_models_numbers_come_from(offline_data_dir, model_files,
                                                             tmp_path):
  out = str(tmp_path / "out")
  align.run_alignment(_config(offline_data_dir, model_files[0], ""), out)
  with open(os.path.join(out, "report.md")) as f:
    report = f.read()
  assert "**Models given as files: `mine`.** Their arrays were computed elsewhere" in report
  assert "(the data directory's stand-in images keep the official labels)" in report
  assert "JPEG copies" not in report  # no model's features came from the stand-in's images


def test_concurrent_writers_and_readers_see_whole_entries(tmp_path, caplog):
  """Runs sharing the per-user cache that miss the same entry at once all compute and store
  it, while others read it back: nobody ever sees an entry it must set aside."""
  store = cache.Cache(str(tmp_path))
  value = {"ceiling": list(np.linspace(0, 1, 5000))}
  arrays = {"scores": np.arange(50_000.0)}
  start = threading.Barrier(4)

  def work(_):
    for round_ in range(10):
      start.wait()  # every thread misses round_'s keys together
      for _ in range(3):
        assert store.json(f"j{round_}", lambda: value) == value
        np.testing.assert_array_equal(store.arrays(f"a{round_}", lambda: arrays)["scores"],
                                      arrays["scores"])

  with caplog.at_level(logging.WARNING):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
      list(pool.map(work, range(4)))
  assert not _warnings(caplog)
  assert not [name for name in os.listdir(tmp_path) if not name.endswith((".json", ".npz"))]
