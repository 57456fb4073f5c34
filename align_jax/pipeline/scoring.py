"""Scoring the models of an alignment run against the humans: each function returns the rows
and figures of results.json that it computes, and pipeline/align.py assembles them.

`score_model` gives one model's RDMs, estimates, class-level RSA, CKA, figures and behaviour;
`with_statistics` adds CIs and permutation p-values to every pooled row from one joint
resampling; `fold_rows` scores the fine-tuning folds' targets within each fold.
"""

import dataclasses
import os
import time

import numpy as np
from absl import logging

from align_jax import rsa
from align_jax.analysis import alignment, behaviour, plots
from align_jax.pipeline import cache, outputs
from align_jax.rsa import checks


def square_subset(condensed: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
  """The square RDM [m, m] of images `idx` (in that order) from a condensed RDM over n."""
  i, j = np.meshgrid(idx, idx, indexing="ij")
  square = condensed[checks.condensed_index(np.minimum(i, j), np.maximum(i, j), n)]
  np.fill_diagonal(square, 0)
  return square


@dataclasses.dataclass(frozen=True)
class Humans:
  """What every model of one alignment run is scored against."""
  labels: np.ndarray  # [n] CIFAR-10 labels
  counts: np.ndarray  # [n, 10] CIFAR-10H annotator counts
  probs: np.ndarray  # [n, 10] CIFAR-10H label distributions
  rdm: np.ndarray  # condensed over the n images
  class_rdm: np.ndarray  # condensed over the 10 classes
  key: str  # cache key of the human side (label distributions, counts, metric)
  ceilings: dict[str, float]  # method -> noise ceiling
  annotators: rsa.HumanAnnotators | None  # redrawn in CIs under 'images+annotators'
  figure_idx: np.ndarray  # images shown in heatmaps, sorted by class
  square: np.ndarray  # the human RDM of those images


@dataclasses.dataclass(frozen=True)
class FoldTarget:
  """Features scored within each fine-tuning fold's held-out images."""
  model: str
  layer: str
  pooled: bool  # the model's features over every image, or the fold networks' own
  folds: list[np.ndarray]  # per fold: indices of its held-out images
  features: list[np.ndarray]  # per fold: [n_held_out, d]

  @property
  def name(self) -> str:
    return f"{self.model}/{self.layer}" + ("" if self.pooled else "/own folds")


@dataclasses.dataclass(frozen=True)
class ModelScores:
  """One model's part of results.json, and what the later stages need of it."""
  entry: dict  # results['models'][label]
  rsa: list[dict]  # pooled rows with estimates (CIs and p-values: with_statistics)
  class_rsa: list[dict]
  cka: list[dict]
  behaviour: dict | None  # classifiers only
  figures: dict[str, str]  # name -> path
  class_square: tuple[str, np.ndarray]  # 'label / layer' of its first layer -> class-level RDM
  fold_targets: list[FoldTarget]


def score_model(rep, humans: Humans, config, methods: list[str], out: str, previous: str,
                store: cache.Cache, run_id: str, folds: list[np.ndarray],
                fold_layers: set[str]) -> ModelScores:
  """One model's RDMs (written to `out`; the run before, in `previous`, is reused where it
  matches), estimates, class-level RSA, CKA, figures and behaviour. Layers in `fold_layers`
  are also scored on the fine-tuning `folds`."""
  n, metric = len(humans.labels), config.metric
  rsa_rows, class_rows, cka_rows, fold_targets = [], [], [], []
  panels = {"CIFAR-10H humans": humans.square}
  class_square = None
  for layer, feats in rep.pooled.items():
    start = time.perf_counter()
    name, rdm_key = f"{rep.label}__{layer}", cache.key(kind="rdm", features=cache.digest(feats),
                                                       metric=metric)
    model_rdm = cache.reuse_rdm(previous, name, rdm_key)
    if model_rdm is None:
      model_rdm = np.asarray(rsa.rdm(feats, metric))
    path = outputs.save_rdm(out, name, model_rdm, run_id=run_id, key=rdm_key, metric=metric,
                            layer=layer, model=rep.label, n_images=n,
                            image_order=f"CIFAR-10 test images 0..{n - 1} (official order)")
    estimates = rsa.compare_methods(model_rdm, humans.rdm, methods)
    rsa_rows += [dict(model=rep.label, layer=layer, metric=metric, method=method, n_images=n,
                      seed=config.seed, pooled=True, rdm_file=path, rdm_key=rdm_key,
                      estimate=estimates[method]) for method in methods]
    class_rdm = np.asarray(rsa.class_rdm(feats, humans.labels, metric))
    outputs.save_rdm(out, f"{rep.label}__{layer}__classes", class_rdm, run_id=run_id,
                     metric=metric, layer=layer, model=rep.label, n_images=n,
                     image_order="class ids 0..9")
    if class_square is None:  # the MDS figure shows each model's first layer
      class_square = (f"{rep.label} / {layer}", rsa.square_from_rdm(class_rdm))
    class_rows.append(dict(model=rep.label, layer=layer, metric=metric,
                           **alignment.class_statistics(class_rdm, humans.class_rdm, methods)))
    cka_rows.append({"model": rep.label, "layer": layer,
                     "linear_cka": rsa.linear_cka(feats, humans.probs)})
    if layer in fold_layers:  # scored on the fine-tuning folds too, for comparison
      fold_targets.append(FoldTarget(rep.label, layer, True, folds,
                                     [feats[idx] for idx in folds]))
    panels[f"{rep.label} / {layer}"] = square_subset(model_rdm, humans.figure_idx, n)
    logging.info("%s/%s: %s (%.1f s)", rep.label, layer,
                 {m: round(e, 4) for m, e in estimates.items()}, time.perf_counter() - start)
  fold_targets += [FoldTarget(rep.label, layer, False, rep.fold_images, feats)
                   for layer, feats in rep.fold_features.items()]
  figures = {f"rdms_{rep.label}": plots.rdm_heatmaps(
      outputs.figure_path(out, f"rdms_{rep.label}"), panels, humans.labels[humans.figure_idx])}
  found = None
  if rep.probs is not None:
    found = store.json(
        cache.key(kind="behaviour", probs=cache.digest(rep.probs), human=humans.key,
                  labels=cache.digest(humans.labels), n_kappa_resamples=config.n_kappa_resamples,
                  seed=config.seed),
        lambda: behaviour.behavioural_alignment(rep.probs, humans.counts, humans.labels,
                                                n_resamples=config.n_kappa_resamples,
                                                seed=config.seed))
    figures[f"confusion_{rep.label}"] = plots.confusions(
        outputs.figure_path(out, f"confusion_{rep.label}"),
        behaviour.row_normalise(np.asarray(found["confusion"])),
        behaviour.row_normalise(np.asarray(found["human_confusion"])), rep.label)
    figures[f"error_matrix_{rep.label}"] = plots.error_matrix(
        outputs.figure_path(out, f"error_matrix_{rep.label}"),
        np.asarray(found["error_matrix"]), rep.label)
  for name, grid in rep.grids.items():
    figures[f"{name}_{rep.label}"] = plots.image_grid(
        outputs.figure_path(out, f"{name}_{rep.label}"), grid,
        f"{rep.label}: {name.replace('_', ' ')}", name)
  entry = {"model": rep.model, "workdir": os.path.abspath(rep.workdir),
           "checkpoint_steps": rep.checkpoint_steps, "source": rep.source,
           "validation": rep.validation}
  return ModelScores(entry, rsa_rows, class_rows, cka_rows, found, figures, class_square,
                     fold_targets)


def with_statistics(rows: list[dict], humans: Humans, config, methods: list[str], out: str,
                    store: cache.Cache
                    ) -> tuple[list[dict], dict[tuple[str, str], dict[str, np.ndarray]]]:
  """The pooled RSA `rows` with their CIs and permutation p-values, and each target's
  resampled scores ((model, layer) -> {'bootstrap', 'null'}). A target's resampled scores are
  cached on their own (they depend only on the seed and the draws, not on the other targets);
  the targets not found are resampled in one joint pass (alignment.resampled_scores)."""
  targets = {(r["model"], r["layer"]): r for r in rows}
  keys = {target: cache.key(kind="resampled_scores", model=row["rdm_key"], human=humans.key,
                            methods=methods, n_bootstrap=config.n_bootstrap,
                            n_permutations=config.n_permutations, seed=config.seed,
                            ci_source=config.ci_source)
          for target, row in targets.items()}

  def compute(missing: list[str]) -> dict[str, dict[str, np.ndarray]]:
    chosen = {t: k for t, k in keys.items() if k in missing}
    rdms = {f"{m}/{l}": np.load(os.path.join(out, targets[m, l]["rdm_file"]))
            for m, l in chosen}
    logging.info("Resampling %d target(s) jointly: %d bootstrap resamples, %d permutations.",
                 len(rdms), config.n_bootstrap, config.n_permutations)
    found = alignment.resampled_scores(rdms, humans.rdm, methods,
                                       n_bootstrap=config.n_bootstrap,
                                       n_permutations=config.n_permutations, seed=config.seed,
                                       human=humans.annotators)
    return {k: found[f"{m}/{l}"] for (m, l), k in chosen.items()}

  found = store.arrays_of(list(keys.values()), compute)
  resampled = {target: found[k] for target, k in keys.items()}
  stats = {target: alignment.rdm_statistics(
      {r["method"]: r["estimate"] for r in rows if (r["model"], r["layer"]) == target},
      resampled[target], methods, humans.ceilings, ci_source=config.ci_source)
           for target in resampled}
  return [dict(r, **stats[r["model"], r["layer"]][r["method"]]) for r in rows], resampled


def fold_rows(targets: list[FoldTarget], humans: Humans, config, methods: list[str],
              ceiling_store: cache.Cache) -> list[dict]:
  """Within-fold RSA rows (results['rsa_folds']): every fold target scored on each fold's
  held-out images, averaged over folds, with a bootstrap CI of that mean (images, and with
  ci_source 'images+annotators' their annotators, resampled within each fold; fold means of
  the same resample index combined; all targets of a fold on the same draws) and the noise
  ceiling of the same images (the mean of the folds' validated ceilings)."""
  out = []
  groups = {}
  for target in targets:
    groups.setdefault(_folds_key(target.folds), []).append(target)
  for group in groups.values():
    folds = group[0].folds
    human_rdms = [rsa.human_rdm(humans.probs[idx], config.metric) for idx in folds]
    ceilings = ceiling_store.json(
        cache.key(kind="fold_ceilings", human=humans.key, folds=cache.digest(
            np.concatenate(folds)), sizes=[len(f) for f in folds], methods=methods,
            n_splits=config.n_ceiling_splits, seed=config.seed),
        lambda f=folds: _fold_ceilings(humans.counts, f, config, methods),
        what="Within-fold noise ceilings")
    per_fold = []  # per fold: {target: (estimates {method: value}, bootstrap [n, methods])}
    for k, (idx, human_rdm) in enumerate(zip(folds, human_rdms)):
      rdms = {t.name: np.asarray(rsa.rdm(t.features[k], config.metric)) for t in group}
      boots = alignment.resampled_scores(
          rdms, human_rdm, methods, n_bootstrap=config.n_fold_bootstrap, n_permutations=0,
          seed=config.seed + k,
          human=(rsa.HumanAnnotators(humans.counts[idx], config.metric) if humans.annotators
                 else None),
          label=f"fold {k + 1}/{len(folds)} ")
      per_fold.append({name: (rsa.compare_methods(rdm, human_rdm, methods),
                              boots[name]["bootstrap"]) for name, rdm in rdms.items()})
    for target in group:
      row = {"model": target.model, "layer": target.layer, "pooled": target.pooled,
             "num_folds": len(folds), "n_bootstrap": config.n_fold_bootstrap,
             "ci_source": config.ci_source}
      for j, method in enumerate(methods):
        row[method] = alignment.fold_mean_statistics(
            [found[target.name][0][method] for found in per_fold],
            [found[target.name][1][:, j] for found in per_fold],
            ceilings[method], rsa.default_interval(config.ci_source))
      out.append(row)
  return out


def _folds_key(folds: list[np.ndarray]) -> bytes:
  return b"|".join(np.asarray(f, np.int64).tobytes() for f in folds)


def _fold_ceilings(counts: np.ndarray, folds: list[np.ndarray], config,
                   methods: list[str]) -> dict[str, float]:
  """The mean over folds of each fold's validated noise ceiling (on its held-out images)."""
  found = [rsa.noise_ceilings(counts[idx], config.metric, methods,
                              n_splits=config.n_ceiling_splits, seed=config.seed)
           for idx in folds]
  return {m: float(np.mean([f[m].ceiling for f in found])) for m in methods}
