"""Scoring one model of an alignment run: its RDMs, RSA statistics, class-level RSA, CKA,
within-fold RSA, figures and behaviour, added to the run's results (pipeline/align.py runs it
for every model)."""

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


@dataclasses.dataclass
class Run:
  """What every model of one alignment run is scored against, and where results go."""
  config: object
  workdir: str  # where this run's outputs are written (the staging folder)
  previous: str  # the output directory, holding the previous run's files until publishing
  store: cache.Cache  # features and statistics of earlier runs
  ceiling_store: cache.Cache  # noise ceilings (the per-user cache, or `store` without one)
  human_key: str  # cache key of the human side (label distributions, counts, metric)
  run_id: str
  results: dict
  methods: list[str]
  labels: np.ndarray  # [n] CIFAR-10 labels
  counts: np.ndarray  # [n, 10] CIFAR-10H annotator counts
  human_probs: np.ndarray  # [n, 10]
  human_rdm: np.ndarray  # condensed over n images
  human_class: np.ndarray  # condensed over 10 classes
  ceilings: dict[str, float]  # method -> noise ceiling
  human: rsa.HumanAnnotators | None  # annotator counts when CIs redraw annotators too
  folds: list[np.ndarray]  # fine-tuning folds' held-out image indices ([] without fine-tuning)
  fold_layers: set[str]  # layers the fine-tuned networks keep per fold (scored within folds)
  fold_human_rdms: dict[bytes, list[np.ndarray]]  # folds' key -> each fold's human RDM (cache)
  figure_idx: np.ndarray  # images shown in heatmaps, sorted by class
  human_square: np.ndarray  # the human RDM of those images
  class_squares: dict[str, np.ndarray]  # 'label / layer' -> class-level RDM, for the MDS figure
  resampled: dict[tuple[str, str], dict[str, np.ndarray]] = dataclasses.field(
      default_factory=dict)  # (model, layer) -> resampled scores (add_statistics)
  # (model, layer, pooled, per-fold image indices, per-fold features): add_fold_statistics
  fold_targets: list[tuple] = dataclasses.field(default_factory=list)


  def human_rdms_of(self, folds: list[np.ndarray]) -> list[np.ndarray]:
    """The human RDM within each fold, computed once per fold assignment."""
    key = _folds_key(folds)
    if key not in self.fold_human_rdms:
      self.fold_human_rdms[key] = [rsa.human_rdm(self.human_probs[idx], self.config.metric)
                                   for idx in folds]
    return self.fold_human_rdms[key]


def _folds_key(folds: list[np.ndarray]) -> bytes:
  return b"|".join(np.asarray(f, np.int64).tobytes() for f in folds)


def add_fold_statistics(run: Run) -> None:
  """Within-fold RSA rows (results['rsa_folds']): every fold target scored on each fold's
  held-out images, averaged over folds, with a bootstrap CI of that mean (images, and with
  ci_source 'images+annotators' their annotators, resampled within each fold; fold means of
  the same resample index combined; all targets of a fold on the same draws) and the noise
  ceiling of the same images (the mean of the folds' validated ceilings)."""
  config, methods = run.config, run.methods
  groups = {}
  for target in run.fold_targets:
    groups.setdefault(_folds_key(target[3]), []).append(target)
  for targets in groups.values():
    folds = targets[0][3]
    humans = run.human_rdms_of(folds)
    ceilings = run.ceiling_store.json(
        cache.key(kind="fold_ceilings", human=run.human_key, folds=cache.digest(
            np.concatenate(folds)), sizes=[len(f) for f in folds], methods=methods,
            n_splits=config.n_ceiling_splits, seed=config.seed),
        lambda: _fold_ceilings(run, folds), what="Within-fold noise ceilings")
    per_fold = []  # per fold: {target: (estimates {method: value}, bootstrap [n, methods])}
    for k, (idx, human_rdm) in enumerate(zip(folds, humans)):
      rdms = {_fold_name(t): np.asarray(rsa.rdm(t[4][k], config.metric)) for t in targets}
      boots = alignment.resampled_scores(
          rdms, human_rdm, methods, n_bootstrap=config.n_fold_bootstrap, n_permutations=0,
          seed=config.seed + k,
          human=rsa.HumanAnnotators(run.counts[idx], config.metric) if run.human else None,
          label=f"fold {k + 1}/{len(folds)} ")
      per_fold.append({name: (rsa.compare_methods(rdm, human_rdm, methods),
                              boots[name]["bootstrap"]) for name, rdm in rdms.items()})
    for target in targets:
      model, layer, pooled, name = *target[:3], _fold_name(target)
      row = {"model": model, "layer": layer, "pooled": pooled, "num_folds": len(folds),
             "n_bootstrap": config.n_fold_bootstrap, "ci_source": config.ci_source}
      for j, method in enumerate(methods):
        scores = [found[name][0][method] for found in per_fold]
        row[method] = alignment.fold_mean_statistics(
            scores, [found[name][1][:, j] for found in per_fold],
            ceilings[method], rsa.default_interval(config.ci_source))
      run.results["rsa_folds"].append(row)


def _fold_name(target: tuple) -> str:
  model, layer, pooled = target[:3]
  return f"{model}/{layer}" + ("" if pooled else "/own folds")


def _fold_ceilings(run: Run, folds: list[np.ndarray]) -> dict[str, float]:
  """The mean over folds of each fold's validated noise ceiling (on its held-out images)."""
  found = [rsa.noise_ceilings(run.counts[idx], run.config.metric, run.methods,
                              n_splits=run.config.n_ceiling_splits, seed=run.config.seed)
           for idx in folds]
  return {m: float(np.mean([f[m].ceiling for f in found])) for m in run.methods}


def score_representation(rep, run: Run) -> None:
  """Adds one model's RDMs, statistics, figures and behaviour to run.results."""
  config, workdir, results = run.config, run.workdir, run.results
  methods, n, metric = run.methods, len(run.labels), config.metric
  results["models"][rep.label] = {"model": rep.model, "workdir": os.path.abspath(rep.workdir),
                                  "checkpoint_steps": rep.checkpoint_steps, "source": rep.source}
  panels = {"CIFAR-10H humans": run.human_square}
  for layer, feats in rep.pooled.items():
    start = time.perf_counter()
    name, rdm_key = f"{rep.label}__{layer}", cache.key(kind="rdm", features=cache.digest(feats),
                                                       metric=metric)
    model_rdm = cache.reuse_rdm(run.previous, name, rdm_key)
    if model_rdm is None:
      model_rdm = np.asarray(rsa.rdm(feats, metric))
    path = outputs.save_rdm(workdir, name, model_rdm, run_id=run.run_id, key=rdm_key,
                            metric=metric, layer=layer, model=rep.label, n_images=n,
                            image_order=f"CIFAR-10 test images 0..{n - 1} (official order)")
    estimates = rsa.compare_methods(model_rdm, run.human_rdm, methods)
    for method in methods:  # CIs and p-values: add_statistics, jointly for every target
      results["rsa"].append(dict(model=rep.label, layer=layer, metric=metric, method=method,
                                 n_images=n, seed=config.seed, pooled=True, rdm_file=path,
                                 rdm_key=rdm_key, estimate=estimates[method]))
    class_rdm = np.asarray(rsa.class_rdm(feats, run.labels, metric))
    outputs.save_rdm(workdir, f"{rep.label}__{layer}__classes", class_rdm, run_id=run.run_id,
                     metric=metric,
                     layer=layer, model=rep.label, n_images=n, image_order="class ids 0..9")
    if layer == next(iter(rep.pooled)):  # the MDS figure shows each model's first layer
      run.class_squares[f"{rep.label} / {layer}"] = rsa.square_from_rdm(class_rdm)
    results["class_rsa"].append(dict(model=rep.label, layer=layer, metric=metric,
                                     **alignment.class_statistics(class_rdm, run.human_class,
                                                                  methods)))
    results["cka"].append({"model": rep.label, "layer": layer,
                           "linear_cka": rsa.linear_cka(feats, run.human_probs)})
    if layer in run.fold_layers:  # scored on the fine-tuning folds too, for comparison
      run.fold_targets.append((rep.label, layer, True, run.folds,
                               [feats[idx] for idx in run.folds]))
    panels[f"{rep.label} / {layer}"] = square_subset(model_rdm, run.figure_idx, n)
    logging.info("%s/%s: %s (%.1f s)", rep.label, layer,
                 {m: round(e, 4) for m, e in estimates.items()}, time.perf_counter() - start)
  for layer, fold_feats in rep.fold_features.items():
    run.fold_targets.append((rep.label, layer, False, rep.fold_images, fold_feats))
  figures = results["figures"]
  figures[f"rdms_{rep.label}"] = plots.rdm_heatmaps(
      outputs.figure_path(workdir, f"rdms_{rep.label}"), panels,
      run.labels[run.figure_idx])
  if rep.probs is not None:
    found = run.store.json(
        cache.key(kind="behaviour", probs=cache.digest(rep.probs), human=run.human_key,
                  labels=cache.digest(run.labels), n_kappa_resamples=config.n_kappa_resamples,
                  seed=config.seed),
        lambda: behaviour.behavioural_alignment(rep.probs, run.counts, run.labels,
                                                n_resamples=config.n_kappa_resamples,
                                                seed=config.seed))
    results["behaviour"][rep.label] = found
    figures[f"confusion_{rep.label}"] = plots.confusions(
        outputs.figure_path(workdir, f"confusion_{rep.label}"),
        behaviour.row_normalise(np.asarray(found["confusion"])),
        behaviour.row_normalise(np.asarray(found["human_confusion"])), rep.label)
    figures[f"error_matrix_{rep.label}"] = plots.error_matrix(
        outputs.figure_path(workdir, f"error_matrix_{rep.label}"),
        np.asarray(found["error_matrix"]), rep.label)
  for name, grid in rep.grids.items():
    figures[f"{name}_{rep.label}"] = plots.image_grid(
        outputs.figure_path(workdir, f"{name}_{rep.label}"), grid,
        f"{rep.label}: {name.replace('_', ' ')}", name)




def add_statistics(run: Run) -> None:
  """CIs and permutation p-values of every pooled RSA row. Each target's resampled scores are
  cached on their own (they depend only on the seed and the draws, not on the other targets);
  the targets not found are resampled in one joint pass (alignment.resampled_scores)."""
  config, rows = run.config, [r for r in run.results["rsa"] if r["pooled"]]
  targets = {(r["model"], r["layer"]): r for r in rows}
  keys = {target: cache.key(kind="resampled_scores", model=row["rdm_key"], human=run.human_key,
                            methods=run.methods, n_bootstrap=config.n_bootstrap,
                            n_permutations=config.n_permutations, seed=config.seed,
                            ci_source=config.ci_source)
          for target, row in targets.items()}

  def compute(missing: list[str]) -> dict[str, dict[str, np.ndarray]]:
    chosen = {t: k for t, k in keys.items() if k in missing}
    rdms = {f"{m}/{l}": np.load(os.path.join(run.workdir, targets[m, l]["rdm_file"]))
            for m, l in chosen}
    logging.info("Resampling %d target(s) jointly: %d bootstrap resamples, %d permutations.",
                 len(rdms), config.n_bootstrap, config.n_permutations)
    found = alignment.resampled_scores(rdms, run.human_rdm, run.methods,
                                       n_bootstrap=config.n_bootstrap,
                                       n_permutations=config.n_permutations, seed=config.seed,
                                       human=run.human)
    return {k: found[f"{m}/{l}"] for (m, l), k in chosen.items()}

  found = run.store.arrays_of(list(keys.values()), compute)
  run.resampled = {target: found[k] for target, k in keys.items()}
  for target, resampled in run.resampled.items():
    target_rows = [r for r in rows if (r["model"], r["layer"]) == target]
    stats = alignment.rdm_statistics({r["method"]: r["estimate"] for r in target_rows},
                                     resampled, run.methods, run.ceilings,
                                     ci_source=config.ci_source)
    for row in target_rows:
      row.update(stats[row["method"]])
