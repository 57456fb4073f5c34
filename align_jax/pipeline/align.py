"""`run_alignment(config, workdir)`: trained models -> features -> RDMs -> alignment with
CIFAR-10H -> rdms/, figures/, results.json, report.md and TensorBoard scalars in `workdir`.

The workdir is locked while the run lasts; outputs are written to a staging folder and replace
the previous run's as one set at the end (pipeline/outputs.py)."""

import itertools
import os
import uuid

import numpy as np
from absl import logging

from align_jax import rsa
from align_jax.analysis import alignment, plots, report
from align_jax.data import cifar10, cifar10h
from align_jax.errors import InputError
from align_jax.pipeline import cache, finetune, outputs, representations, scoring
from align_jax.rsa.reliability import ESTIMATOR
from align_jax.runtime import config_checks, multihost, summaries
from align_jax.runtime import workdir as workdir_lib
from align_jax.runtime.config_checks import split_list
from align_jax.runtime.progress import Progress

RESULTS_FILE = outputs.RESULTS_FILE


def _load_data(config):
  data = cifar10.load_cifar10(config.data_dir)
  probs, counts = cifar10h.load_cifar10h(config.data_dir, data.test_labels)
  if config.num_images > len(data.test_labels):
    raise InputError(f"num_images={config.num_images} exceeds the {len(data.test_labels)} test "
                     "images (0 = all).")
  n = config.num_images or len(data.test_labels)
  return data.test_images[:n], data.test_labels[:n].astype(np.int64), probs[:n], counts[:n]


def _gather(config, models: dict[str, str], images: np.ndarray, store: cache.Cache) -> list:
  layers = {"classification": split_list(config.classifier_layers),
            "vae": split_list(config.vae_layers)}
  reps = []
  for label, workdir in models.items():
    if workdir.endswith(".npz"):
      reps.append(representations.from_file(label, workdir, len(images)))
    elif finetune.is_finetune_workdir(workdir):
      reps.extend(representations.from_finetuning(label, workdir, len(images)))
    else:
      reps.append(representations.from_checkpoint(
          label, *representations.split_checkpoint(workdir, config.checkpoint), images, layers,
          config, store))
  return reps


def _figure_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
  """A seeded subset of image indices, sorted by class (then index), for RDM heatmaps."""
  chosen = np.sort(np.random.default_rng([seed, 7]).permutation(len(labels))[:size])
  return chosen[np.argsort(labels[chosen], kind="stable")]


def _check_comparisons(config, reps: list) -> None:
  """Fails before any resampling when `comparisons` names a target the run does not score."""
  known = {(r.label, layer) for r in reps for layer in r.pooled}
  for ma, la, mb, lb in config_checks.comparison_pairs(config.comparisons):
    for model, layer in ((ma, la), (mb, lb)):
      if (model, layer) not in known:
        raise InputError(f"comparisons names {model}/{layer}, which this run does not score; "
                         f"it scores {', '.join(sorted(f'{m}/{l}' for m, l in known))}.")


def _default_pairs(rows: list[dict]) -> list[tuple[str, str, str, str]]:
  """Every pair of pooled targets of different models that share a layer, and the first layers
  of two models that share none, sorted."""
  layers, first = {}, {}
  for r in rows:
    layers.setdefault(r["model"], set()).add(r["layer"])
    first.setdefault(r["model"], r)
  pairs = {(a["model"], a["layer"], b["model"], b["layer"])
           for a, b in itertools.combinations(rows, 2)
           if a["model"] != b["model"] and a["layer"] == b["layer"]}
  pairs |= {(a["model"], a["layer"], b["model"], b["layer"])
            for a, b in itertools.combinations(first.values(), 2)
            if not layers[a["model"]] & layers[b["model"]]}
  return sorted(pairs)


def _comparisons(config, methods: list[str], rsa_rows: list[dict],
                 resampled: dict[tuple[str, str], dict[str, np.ndarray]]) -> list[dict]:
  """Paired bootstrap of the `comparisons` pairs, or by default of every pair of pooled targets
  of different models that share a layer and of the first layers of two models that share none:
  per-resample differences of the two targets' scores from the joint resampling (same images,
  same redrawn annotators); Holm correction across that family."""
  method = methods[0]
  rows = [r for r in rsa_rows if r["method"] == method and r["pooled"]]
  pairs = (config_checks.comparison_pairs(config.comparisons) if config.comparisons
           else _default_pairs(rows))
  if not pairs or not config.n_bootstrap:
    return []
  by_target = {(r["model"], r["layer"]): r for r in rows}
  out = []
  for ma, la, mb, lb in pairs:  # the first method is column 0 of the resampled scores
    samples = resampled[ma, la]["bootstrap"][:, 0] - resampled[mb, lb]["bootstrap"][:, 0]
    result = rsa.paired_result(by_target[ma, la]["estimate"] - by_target[mb, lb]["estimate"],
                               samples, 0.95, rsa.default_interval(config.ci_source))
    out.append({"a": f"{ma}/{la}", "b": f"{mb}/{lb}", "method": method,
                "difference": result.difference, "ci_low": result.ci_low,
                "ci_high": result.ci_high, "p_value": result.p_value,
                "n_bootstrap": config.n_bootstrap, "ci_source": config.ci_source})
  for row, adjusted in zip(out, alignment.holm([r["p_value"] for r in out])):
    row["p_holm"] = adjusted
  return out


def _noise_ceilings(config, counts: np.ndarray, methods: list[str]) -> dict[str, dict]:
  """results.json's record of each method's noise ceiling (validated estimate, band, the raw
  split-half r and Spearman-Brown's value for reference)."""
  logging.info("Noise ceiling (%s, %d split halves).", ESTIMATOR, config.n_ceiling_splits)
  ceilings = rsa.noise_ceilings(counts, config.metric, methods, n_splits=config.n_ceiling_splits,
                                seed=config.seed)
  return {m: {"estimator": c.estimator, "ceiling": c.ceiling, "band": list(c.band),
              "r_half": c.r_half, "r_half_std": c.r_half_std,
              "r_half_splits": list(c.r_half_splits), "spearman_brown": c.spearman_brown,
              "latent_classes": list(c.latent_classes),
              "calibration": [list(k) for k in c.calibration],
              "n_splits": config.n_ceiling_splits} for m, c in ceilings.items()}


def _statistics(config, rsa_rows: list[dict], comparisons: list[dict],
                permutations: dict) -> dict:
  """What every table's uncertainty rests on: resample counts, the CI source and interval, the
  ceiling estimator, and what each p-value family (`permutations`: its summary) can resolve
  after Holm's correction."""
  return {"n_bootstrap": config.n_bootstrap, "n_permutations": config.n_permutations,
          "n_ceiling_splits": config.n_ceiling_splits, "ci_source": config.ci_source,
          "ci_interval": next((r["ci_interval"] for r in rsa_rows if r["ci_interval"]), None),
          "ci_level": 0.95, "ceiling_estimator": ESTIMATOR, "permutations": permutations,
          "comparisons": alignment.family_summary(
              len(comparisons), alignment.paired_floor(config.n_bootstrap), config.n_bootstrap)}


def _write_scalars(workdir: str, results: dict) -> None:
  writer = summaries.TensorBoardWriter(workdir)
  scalars = {f"rsa/{r['model']}/{r['layer']}/{r['method']}": r["estimate"]
             for r in results["rsa"]}
  scalars.update({f"rsa_fraction_of_ceiling/{r['model']}/{r['layer']}/{r['method']}":
                  r["fraction_of_ceiling"] for r in results["rsa"] if r["fraction_of_ceiling"]})
  for label, found in results["behaviour"].items():
    for key in ("accuracy", "human_cross_entropy", "human_kl", "ece"):
      scalars[f"behaviour/{label}/{key}"] = found[key]
    scalars[f"behaviour/{label}/error_consistency"] = found["error_consistency"]["kappa"]
  writer.write_scalars(0, scalars)
  writer.flush()
  writer.close()


def run_alignment(config, workdir: str) -> dict | None:
  """The whole alignment run (docs/alignment.md); returns results.json's content. Under
  multi-host, process 0 runs it and the others return None at once (runtime/multihost.py)."""
  config_checks.alignment(config)
  if not multihost.is_primary():
    return None
  models = representations.parse_models(config.models)
  data = _load_data(config)  # validated before anything is written
  with workdir_lib.lock(workdir, all_processes=False):  # process 0's work alone
    stage = outputs.staging_dir(workdir)
    results = _align(config, stage, workdir, models, *data)
    outputs.publish(stage, workdir)
  return results


def _align(config, workdir: str, previous: str, models: dict[str, str], images, labels,
           human_probs, counts) -> dict:
  """Every output of the run, written into `workdir` (the staging folder); `previous` is the
  output directory, whose cache/ and earlier RDMs are reused where nothing changed. The rows
  of results.json come from the scoring functions and are assembled here."""
  methods, n, run_id = split_list(config.methods), len(labels), uuid.uuid4().hex[:12]
  store = cache.Cache.of_workdir(previous)
  ceiling_store = cache.shared_cache(config.cache_dir) or store
  human_key = cache.key(kind="human", probs=cache.digest(human_probs),
                        counts=cache.digest(counts), metric=config.metric)
  logging.info("Alignment of %s on %d images, %s RDMs, methods %s.", sorted(models), n,
               config.metric, methods)
  human_rdm = np.asarray(rsa.human_rdm(human_probs, config.metric))
  outputs.save_rdm(workdir, "human__images", human_rdm, run_id=run_id, metric=config.metric,
                   layer="CIFAR-10H label distributions", model="humans", n_images=n,
                   image_order=f"CIFAR-10 test images 0..{n - 1}")
  human_class = np.asarray(rsa.human_class_rdm(counts, labels, config.metric))
  outputs.save_rdm(workdir, "human__classes", human_class, run_id=run_id, metric=config.metric,
                   layer="CIFAR-10H confusion rows", model="humans", n_images=n,
                   image_order="class ids 0..9")
  reps = _gather(config, models, images, store)
  _check_comparisons(config, reps)  # before the noise ceiling's minutes
  noise_ceiling = ceiling_store.json(
      cache.key(kind="noise_ceiling", human=human_key, n_images=n, methods=methods,
                n_splits=config.n_ceiling_splits, seed=config.seed),
      lambda: _noise_ceilings(config, counts, methods), what="Noise ceiling")
  figure_idx = _figure_subset(labels, min(config.figure_images, n), config.seed)
  humans = scoring.Humans(
      labels=labels, counts=counts, probs=human_probs, rdm=human_rdm, class_rdm=human_class,
      key=human_key, ceilings={m: c["ceiling"] for m, c in noise_ceiling.items()},
      annotators=(rsa.HumanAnnotators(counts, config.metric)
                  if config.ci_source == "images+annotators" else None),
      figure_idx=figure_idx, square=scoring.square_subset(human_rdm, figure_idx, n))
  fold_source = next((r for r in reps if r.fold_images), None)
  folds = fold_source.fold_images if fold_source else []
  fold_layers = {l for r in reps for l in r.fold_features}
  progress, scored = Progress("scoring models", len(reps)), []
  for k, rep in enumerate(reps):
    scored.append(scoring.score_model(rep, humans, config, methods, workdir, previous, store,
                                      run_id, folds, fold_layers))
    progress.update(k + 1)
  rsa_rows, resampled = scoring.with_statistics([r for m in scored for r in m.rsa], humans,
                                                config, methods, workdir, store)
  rsa_folds = scoring.fold_rows([t for m in scored for t in m.fold_targets], humans, config,
                                methods, ceiling_store)
  comparisons = _comparisons(config, methods, rsa_rows, resampled)
  holm_p, permutations = alignment.permutation_family(rsa_rows)
  rsa_rows = [r if p is None else dict(r, p_permutation_holm=p) for r, p in zip(rsa_rows, holm_p)]
  behaviours = {rep.label: model.behaviour for rep, model in zip(reps, scored)
                if model.behaviour is not None}
  figures = {name: path for model in scored for name, path in model.figures.items()}
  primary = [r for r in rsa_rows if r["method"] == methods[0]]
  figures["alignment"] = plots.alignment_bars(
      outputs.figure_path(workdir, "alignment"),
      [f"{r['model']}/{r['layer']}" for r in primary], [r["estimate"] for r in primary],
      [r["ci_low"] for r in primary], [r["ci_high"] for r in primary],
      noise_ceiling[methods[0]], f"{methods[0]} with the human RDM")
  figures["mds_classes"] = plots.mds_panels(
      outputs.figure_path(workdir, "mds_classes"),
      {"CIFAR-10H humans": rsa.square_from_rdm(human_class),
       **dict(model.class_square for model in scored if model.class_square)})
  results = {"provenance": {"run_id": run_id, "software": outputs.software_provenance(),
                            "data": outputs.data_provenance(config.data_dir),
                            "seed": config.seed},
             "config": config.to_dict(), "n_images": n, "metric": config.metric,
             "methods": methods, "noise_ceiling": noise_ceiling,
             "models": {rep.label: model.entry for rep, model in zip(reps, scored)},
             "rsa": rsa_rows, "rsa_folds": rsa_folds,
             "class_rsa": [r for model in scored for r in model.class_rsa],
             "cka": [r for model in scored for r in model.cka], "comparisons": comparisons,
             "behaviour": behaviours,
             "seeds": alignment.seed_summary(rsa_rows, behaviours),
             "figures": {k: os.path.relpath(v, workdir) for k, v in figures.items()},
             "statistics": _statistics(config, rsa_rows, comparisons, permutations)}
  outputs.atomic_write_text(os.path.join(workdir, outputs.REPORT_FILE), report.render(results))
  _write_scalars(workdir, results)
  outputs.atomic_write_json(os.path.join(workdir, outputs.RESULTS_FILE), results)
  return results
