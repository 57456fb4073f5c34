"""Representational alignment statistics of one model RDM against the human RDM, per-fold
scores, class-level RSA, Holm's correction, what a family of resampling tests can resolve, and
summaries across training seeds. Arrays in, JSON-ready dicts out."""

import itertools
import math
import re

import numpy as np

from align_jax import rsa

SEED_SUFFIX = re.compile(r"^(.*)-seed\d+$")  # labels 'philnet-seed0', 'philnet-seed1' group
ALPHA = 0.05  # the significance level the report speaks of


def holm(p_values) -> list[float]:
  """Holm-Bonferroni step-down adjusted p-values (same order as given).

  Five lines of numpy rather than a statsmodels dependency for one function.
  """
  p = np.asarray(p_values, np.float64)
  order = np.argsort(p)
  adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
  out = np.empty_like(p)
  out[order] = np.minimum(adjusted, 1.0)
  return out.tolist()


def permutation_floor(n_permutations: int) -> float:
  """The smallest p-value `n_permutations` permutations can give: 1 / (1 + n)."""
  return 1.0 / (1 + n_permutations)


def paired_floor(n_bootstrap: int) -> float:
  """The smallest two-sided paired-bootstrap p-value: 2 / (1 + n) (see rsa.paired_bootstrap)."""
  return min(1.0, 2.0 / (1 + n_bootstrap))


def family_summary(num_tests: int, floor: float, resamples: int) -> dict:
  """What a family of `num_tests` resampling tests with p-value `floor` can show after Holm's
  correction: its smallest possible adjusted p is num_tests * floor, so when that exceeds ALPHA
  no test can be significant, whatever the data. `resamples_needed` is the count that would
  make the smallest adjusted p reach ALPHA."""
  smallest = min(1.0, num_tests * floor)
  # floor = c / (1 + n) with c = 1 (permutations) or 2 (paired bootstrap)
  numerator = floor * (1 + resamples)
  return {"tests": num_tests, "resamples": resamples, "floor": floor, "min_holm_p": smallest,
          "alpha": ALPHA, "significance_reachable": bool(num_tests and smallest <= ALPHA),
          "resamples_needed": int(math.ceil(num_tests * numerator / ALPHA - 1)) if num_tests else 0}


def permutation_family(rsa_rows: list[dict]) -> tuple[list[float | None], dict]:
  """Holm over every pooled model x layer x method permutation test: each row's adjusted p
  (None where the row has no permutation p-value), and that family's summary (see
  family_summary)."""
  tested = [k for k, r in enumerate(rsa_rows) if r.get("p_permutation") is not None]
  adjusted = dict(zip(tested, holm([rsa_rows[k]["p_permutation"] for k in tested])))
  resamples = rsa_rows[tested[0]]["n_permutations"] if tested else 0
  return ([adjusted.get(k) for k in range(len(rsa_rows))],
          family_summary(len(tested), permutation_floor(resamples), resamples))


def resampled_scores(model_rdms: dict[str, np.ndarray], human_rdm: np.ndarray,
                     methods: list[str], *, n_bootstrap: int, n_permutations: int, seed: int,
                     human: rsa.HumanAnnotators | None = None,
                     label: str = "") -> dict[str, dict[str, np.ndarray]]:
  """Per target RDM: {'bootstrap': [n_bootstrap, methods], 'null': [n_permutations, methods]}
  scores against the human RDM. The rank methods come from one joint pass over every target
  (rsa.resample_jointly); other methods are resampled per target on the same draws. Either
  way a target's scores depend only on the seed, not on the other targets, and differences
  between targets are paired (same images, same redrawn annotators)."""
  rank = [m for m in methods if m in rsa.RANK_METHODS]
  other = [m for m in methods if m not in rsa.RANK_METHODS]
  out = {k: {"bootstrap": np.empty((n_bootstrap, len(methods))),
             "null": np.empty((n_permutations, len(methods)))} for k in model_rdms}
  columns = [methods.index(m) for m in rank]
  if rank and (n_bootstrap or n_permutations):
    joint = rsa.resample_jointly(model_rdms, human_rdm, rank, n_bootstrap=n_bootstrap,
                                 n_permutations=n_permutations, seed=seed,
                                 human_counts=human and human.counts,
                                 metric=human and human.metric, label=label)
    for k in model_rdms:
      out[k]["bootstrap"][:, columns] = joint.bootstrap[k]
      out[k]["null"][:, columns] = joint.null[k]
  for k, model_rdm in model_rdms.items():
    if other and n_bootstrap:
      boots = rsa.bootstrap_methods(model_rdm, human_rdm, other, n_resamples=n_bootstrap,
                                    seed=seed, human=human, label=f"{label}{k}")
      for m in other:
        out[k]["bootstrap"][:, methods.index(m)] = boots[m].samples
    for m in other if n_permutations else []:
      out[k]["null"][:, methods.index(m)] = rsa.permutation_test(
          model_rdm, human_rdm, m, n_permutations=n_permutations, seed=seed,
          label=f"{label}{k}").null
  return out


def rdm_statistics(estimates: dict[str, float], resampled: dict[str, np.ndarray],
                   methods: list[str], ceilings: dict[str, float], *,
                   ci_source: str) -> dict[str, dict]:
  """For each method: the score on all images, its bootstrap 95% CI (interval by ci_source,
  see rsa.inference), the permutation p-value (one-sided: more similar than chance) and the
  fraction of the noise ceiling, from resampled_scores' arrays of one target (no resamples:
  None)."""
  boot, null = resampled["bootstrap"], resampled["null"]
  interval = rsa.default_interval(ci_source)
  out = {}
  for k, method in enumerate(methods):
    estimate = estimates[method]
    entry = {"estimate": estimate, "ci_low": None, "ci_high": None, "p_permutation": None,
             "n_bootstrap": len(boot), "n_permutations": len(null), "ci_source": ci_source,
             "ci_interval": None,
             "fraction_of_ceiling": estimate / ceilings[method] if ceilings[method] else None}
    if len(boot):
      low, high = rsa.interval_bounds(estimate, boot[:, k], 0.95, interval)
      entry.update(ci_low=low, ci_high=high, ci_interval=interval)
    if len(null):
      entry["p_permutation"] = rsa.permutation_p_value(estimate, null[:, k])
    out[method] = entry
  return out


def fold_mean_statistics(scores: list[float], bootstraps: list[np.ndarray], ceiling: float,
                         interval: str) -> dict:
  """A score averaged over folds with its 95% CI: `bootstraps[k]` are fold k's resampled
  scores (the same number per fold, drawn independently per fold, as its images are its own),
  so their mean over folds, resample by resample, is a bootstrap sample of the fold mean."""
  mean = float(np.mean(scores))
  entry = {"mean": mean, "std": float(np.std(scores)), "per_fold": [float(s) for s in scores],
           "ci_low": None, "ci_high": None, "ceiling": ceiling,
           "fraction_of_ceiling": mean / ceiling if ceiling else None}
  if len(bootstraps[0]):
    low, high = rsa.interval_bounds(mean, np.mean(np.stack(bootstraps), axis=0), 0.95, interval)
    entry.update(ci_low=float(low), ci_high=float(high))
  return entry


def class_statistics(model_class_rdm: np.ndarray, human_class_rdm: np.ndarray,
                     methods: list[str]) -> dict[str, float]:
  """Rank correlations between class-level RDMs (45 class pairs for CIFAR-10)."""
  return {method: rsa.compare(model_class_rdm, human_class_rdm, method) for method in methods}


def seed_summary(rsa_rows: list[dict], behaviours: dict[str, dict]) -> list[dict]:
  """Mean and standard deviation across seeds for labels named '<group>-seed<k>'."""
  groups = {}
  for label in {r["model"] for r in rsa_rows}:
    match = SEED_SUFFIX.match(label)
    if match:
      groups.setdefault(match.group(1), []).append(label)
  out = []
  for group, labels in sorted(g for g in groups.items() if len(g[1]) > 1):
    for (layer, method), rows in itertools.groupby(
        sorted((r for r in rsa_rows if r["model"] in labels and r["pooled"]),
               key=lambda r: (r["layer"], r["method"])), key=lambda r: (r["layer"], r["method"])):
      values = [r["estimate"] for r in rows]
      out.append({"group": group, "layer": layer, "method": method, "n_seeds": len(values),
                  "mean": float(np.mean(values)), "std": float(np.std(values, ddof=1))})
    for key in ("accuracy", "human_cross_entropy", "human_kl"):
      values = [behaviours[l][key] for l in labels if l in behaviours]
      if values:
        out.append({"group": group, "layer": "behaviour", "method": key, "n_seeds": len(values),
                    "mean": float(np.mean(values)), "std": float(np.std(values, ddof=1))})
  return out
