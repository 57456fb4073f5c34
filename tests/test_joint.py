"""The joint resampling engine against the expanded re-ranking of every resample."""

import itertools

import numpy as np
import pytest

from align_jax.analysis import alignment
from align_jax.errors import InputError
from align_jax.rsa import joint, ranks
import align_jax.rsa as rsa
from align_jax.runtime import backend

METHODS = ["spearman", "rho-a"]


def _tie_heavy(n: int, seed: int):
  """Annotator counts of few annotators (many duplicate rows, tied human distances), their
  human RDM, and model RDMs with ties (features on a coarse grid) and without."""
  rng = np.random.default_rng(seed)
  counts = rng.multinomial(6, rng.dirichlet(np.full(10, 0.05), n))
  human = np.asarray(rsa.human_rdm(counts / 6, "euclidean"))
  coarse = np.round(rng.random((n, 3)) * 2).astype(np.float32)
  models = {"coarse": np.asarray(rsa.rdm(coarse + 0.001 * np.arange(3), "euclidean")),
            "smooth": np.asarray(rsa.rdm(rng.standard_normal((n, 8)).astype(np.float32),
                                         "correlation")),
            "soft": np.asarray(rsa.human_rdm(rng.multinomial(
                9, rng.dirichlet(np.ones(10), n)) / 9, "euclidean"))}
  return counts, human, models


@pytest.mark.parametrize("ci_source", ["images", "images+annotators"])
@pytest.mark.parametrize("n,chunk,path", [(45, None, "host"), (90, None, "host"),
                                          (90, 97, "host"), (90, None, "xla")])
def test_every_resample_equals_the_expanded_re_ranking(ci_source, n, chunk, path, monkeypatch):
  if chunk:  # many chunks: tie groups and running sums carried across chunk borders
    monkeypatch.setattr(ranks, "CHUNK", chunk)
  if path == "xla":  # the jitted accelerator pass, here on the CPU
    monkeypatch.setattr(backend, "rsa_on_host", lambda: False)
  counts, human, models = _tie_heavy(n, seed=n)
  annotators = rsa.HumanAnnotators(counts, "euclidean") if ci_source != "images" else None
  result = rsa.resample_jointly(models, human, METHODS, n_bootstrap=12, n_permutations=0,
                                seed=5, human_counts=annotators and counts, metric="euclidean")
  for name, model in models.items():
    expanded = rsa.bootstrap_methods(model, human, METHODS, n_resamples=12, seed=5,
                                     human=annotators, engine="expanded")
    for k, method in enumerate(METHODS):
      np.testing.assert_allclose(result.bootstrap[name][:, k], expanded[method].samples,
                                 rtol=0, atol=1e-12)
      assert result.estimates[name][method] == pytest.approx(rsa.compare(model, human, method),
                                                             abs=1e-12)
  # the per-call API is the engine, and a target's scores do not depend on the others
  alone = rsa.bootstrap_methods(models["coarse"], human, METHODS, n_resamples=12, seed=5,
                                human=annotators)
  np.testing.assert_array_equal(alone["spearman"].samples, result.bootstrap["coarse"][:, 0])


def test_paired_differences_and_permutations_equal_the_expanded_paths():
  counts, human, models = _tie_heavy(70, seed=3)
  annotators = rsa.HumanAnnotators(counts, "euclidean")
  result = rsa.resample_jointly(models, human, METHODS, n_bootstrap=10, n_permutations=25,
                                seed=2, human_counts=counts, metric="euclidean")
  for a, b in itertools.combinations(models, 2):
    expanded = rsa.paired_bootstrap(models[a], models[b], human, "rho-a", n_resamples=10,
                                    seed=2, human=annotators, engine="expanded")
    np.testing.assert_allclose(result.bootstrap[a][:, 1] - result.bootstrap[b][:, 1],
                               expanded.samples, rtol=0, atol=1e-12)
    engine = rsa.paired_bootstrap(models[a], models[b], human, "rho-a", n_resamples=10, seed=2,
                                  human=annotators)
    assert (engine.ci_low, engine.ci_high, engine.p_value) == pytest.approx(
        (expanded.ci_low, expanded.ci_high, expanded.p_value), abs=1e-12)
  for name, model in models.items():
    for k, method in enumerate(METHODS):
      expanded = rsa.permutation_test(model, human, method, n_permutations=25, seed=2,
                                      engine="expanded")
      np.testing.assert_allclose(result.null[name][:, k], expanded.null, rtol=0, atol=1e-12)


def test_weighted_ranks_are_the_average_ranks_of_the_expanded_multiset():
  rng = np.random.default_rng(4)
  values = rng.integers(0, 6, 300).astype(np.float32)  # heavy ties
  weights = rng.integers(0, 4, 300).astype(np.uint16)
  out = np.empty(300, np.int32)
  ties = joint.weighted_ranks(joint.sort_rdm(values), weights, int(weights.sum()), out)
  expanded = np.repeat(values, weights)
  average = {v: r for v, r in zip(expanded, __import__("scipy.stats").stats.rankdata(expanded))}
  kept = weights > 0
  np.testing.assert_array_equal(out[kept], [2 * average[v] - (len(expanded) + 1)
                                            for v in values[kept]])
  _, tie_counts = np.unique(expanded, return_counts=True)
  assert ties == float(ranks.tie_correction([tie_counts]))


def test_pair_weights_drop_self_pairs_and_count_repeats():
  rng = np.random.default_rng(0)
  drawn, multiplicity = joint.draw_images(50, rng)
  m = np.zeros(50, np.int64)
  m[drawn] = multiplicity
  expected = np.random.default_rng(0).integers(0, 50, 50)
  i, j = np.triu_indices(50, 1)
  weights = joint._pair_weights(m)  # pylint: disable=protected-access
  pairs = sum(1 for a, b in itertools.combinations(expected, 2) if a != b)
  assert weights.sum() == pairs
  np.testing.assert_array_equal(weights, m[i] * m[j])


def test_alignment_statistics_mix_joint_and_per_target_methods():
  counts, human, models = _tie_heavy(40, seed=8)
  methods = ["spearman", "pearson", "rho-a"]
  found = alignment.resampled_scores(models, human, methods, n_bootstrap=6, n_permutations=5,
                                     seed=1)
  for name, model in models.items():
    per_call = rsa.bootstrap_methods(model, human, methods, n_resamples=6, seed=1,
                                     engine="expanded")
    for k, method in enumerate(methods):
      np.testing.assert_allclose(found[name]["bootstrap"][:, k], per_call[method].samples,
                                 rtol=0, atol=1e-12)
      np.testing.assert_allclose(
          found[name]["null"][:, k],
          rsa.permutation_test(model, human, method, n_permutations=5, seed=1,
                               engine="expanded").null, rtol=0, atol=1e-12)


def test_bad_input_is_refused():
  counts, human, models = _tie_heavy(30, seed=1)
  with pytest.raises(InputError, match="rank methods"):
    rsa.resample_jointly(models, human, ["pearson"], n_bootstrap=2, n_permutations=0, seed=0)
  with pytest.raises(InputError, match="same images"):
    rsa.resample_jointly({"short": models["soft"][:-1]}, human, METHODS, n_bootstrap=2,
                         n_permutations=0, seed=0)
  with pytest.raises(InputError, match="annotator counts cover"):
    rsa.resample_jointly(models, human, METHODS, n_bootstrap=2, n_permutations=0, seed=0,
                         human_counts=counts[:-1], metric="euclidean")
  with pytest.raises(InputError, match="engine"):
    rsa.bootstrap(models["soft"], human, n_resamples=2, engine="fast")


@pytest.mark.parametrize("chunk", [1, 2, 5, 64])
def test_target_sums_carry_tie_groups_across_chunks_and_zero_weights(chunk, monkeypatch):
  """Sums over the weighted multiset against the weighted ranks written out pair by pair,
  with chunks so small that groups (and weight-0 pairs closing them) straddle every border."""
  monkeypatch.setattr(ranks, "CHUNK", chunk)
  for seed in range(12):
    rng = np.random.default_rng(seed)
    n = 14
    values = rng.integers(0, 4, n * (n - 1) // 2).astype(np.float32)  # heavy ties
    m = rng.choice([0, 0, 1, 2, 3], n)
    weights = joint._pair_weights(m)  # pylint: disable=protected-access
    num = int(weights.sum())
    if num < 2:
      continue
    human_c = rng.integers(-num, num, len(values)).astype(np.int32)
    order = joint.sort_rdm(values)
    c_a = np.empty(len(values), np.int32)
    ties = joint.weighted_ranks(order, weights, num, c_a)
    cross, found_ties = joint.target_sums(joint.sorted_pairs(order, n), m, human_c, num)
    expected = float(np.sum(weights.astype(np.int64) * c_a * human_c.astype(np.int64)))
    assert cross == pytest.approx(expected, rel=1e-15, abs=1e-9)
    assert found_ties == ties
