"""`run_alignment(config, workdir)`: trained models -> features -> RDMs -> alignment with
CIFAR-10H -> rdms/, figures/, results.json, report.md and TensorBoard scalars in `workdir`.

The workdir is locked while the run lasts; outputs are written to a staging folder and replace
the previous run's as one set at the end (pipeline/outputs.py)."""

import itertools
import os
import uuid

import numpy as np
from absl import logging

from align_jax import config_checks, multihost, rsa, summaries
from align_jax import workdir as workdir_lib
from align_jax.analysis import alignment, plots, report
from align_jax.data import cifar10, cifar10h
from align_jax.errors import InputError
from align_jax.progress import Progress
from align_jax.config_checks import split_list
from align_jax.pipeline import cache, finetune, outputs, representations, scoring
from align_jax.rsa.reliability import ESTIMATOR

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


def _comparisons(config, rsa_rows: list[dict], run: scoring.Run) -> list[dict]:
  """Paired bootstrap of the `comparisons` pairs, or by default of every pair of pooled targets
  of different models that share a layer and of the first layers of two models that share none:
  per-resample differences of the two targets' scores from the joint resampling (same images,
  same redrawn annotators); Holm correction across that family."""
  method = split_list(config.methods)[0]
  rows = [r for r in rsa_rows if r["method"] == method and r["pooled"]]
  pairs = (config_checks.comparison_pairs(config.comparisons) if config.comparisons
           else _default_pairs(rows))
  if not pairs or not config.n_bootstrap:
    return []
  by_target = {(r["model"], r["layer"]): r for r in rows}
  column = run.methods.index(method)
  out = []
  for ma, la, mb, lb in pairs:
    samples = (run.resampled[ma, la]["bootstrap"][:, column]
               - run.resampled[mb, lb]["bootstrap"][:, column])
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


def _statistics(config, results: dict) -> dict:
  """What every table's uncertainty rests on: resample counts, the CI source and interval, the
  ceiling estimator, and what each p-value family can resolve after Holm's correction (the
  permutation family's Holm-adjusted p-values are added to the RSA rows here)."""
  comparisons = results["comparisons"]
  return {"n_bootstrap": config.n_bootstrap, "n_permutations": config.n_permutations,
          "n_ceiling_splits": config.n_ceiling_splits, "ci_source": config.ci_source,
          "ci_interval": next((r["ci_interval"] for r in results["rsa"] if r["ci_interval"]),
                              None),
          "ci_level": 0.95, "ceiling_estimator": ESTIMATOR,
          "permutations": alignment.correct_permutation_family(results["rsa"]),
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
  """The whole alignment run (see README, 'Alignment'); returns results.json's content. Under
  multi-host, process 0 runs it and the others return None at once (align_jax/multihost.py)."""
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
  output directory, whose cache/ and earlier RDMs are reused where nothing changed."""
  methods, n, run_id = split_list(config.methods), len(labels), uuid.uuid4().hex[:12]
  store = cache.Cache.of_workdir(previous)
  ceiling_store = cache.shared_cache(config.cache_dir) or store
  human_key = cache.key(kind="human", probs=cache.digest(human_probs),
                        counts=cache.digest(counts), metric=config.metric)
  logging.info("Alignment of %s on %d images, %s RDMs, methods %s.", sorted(models), n,
               config.metric, methods)
  results = {"provenance": {"run_id": run_id, "software": outputs.software_provenance(),
                            "data": outputs.data_provenance(config.data_dir),
                            "seed": config.seed},
             "config": config.to_dict(), "n_images": n, "metric": config.metric,
             "methods": methods, "noise_ceiling": {}, "models": {}, "rsa": [], "rsa_folds": [],
             "class_rsa": [], "cka": [], "comparisons": [], "behaviour": {}, "seeds": [],
             "figures": {}}
  human_rdm = np.asarray(rsa.human_rdm(human_probs, config.metric))
  outputs.save_rdm(workdir, "human__images", human_rdm, run_id=run_id,
                                metric=config.metric, layer="CIFAR-10H label distributions",
                                model="humans", n_images=n,
                                image_order=f"CIFAR-10 test images 0..{n - 1}")
  human_class = np.asarray(rsa.human_class_rdm(counts, labels, config.metric))
  outputs.save_rdm(workdir, "human__classes", human_class, run_id=run_id, metric=config.metric,
                   layer="CIFAR-10H confusion rows", model="humans", n_images=n,
                   image_order="class ids 0..9")
  reps = _gather(config, models, images, store)
  _check_comparisons(config, reps)  # before the noise ceiling's minutes
  results["noise_ceiling"] = ceiling_store.json(
      cache.key(kind="noise_ceiling", human=human_key, n_images=n, methods=methods,
                n_splits=config.n_ceiling_splits, seed=config.seed),
      lambda: _noise_ceilings(config, counts, methods), what="Noise ceiling")
  fold_source = next((r for r in reps if r.fold_images), None)
  figure_idx = _figure_subset(labels, min(config.figure_images, n), config.seed)
  run = scoring.Run(config=config, workdir=workdir, previous=previous, store=store,
             ceiling_store=ceiling_store,
             human_key=human_key, run_id=run_id, results=results, methods=methods,
             labels=labels, counts=counts, human_probs=human_probs, human_rdm=human_rdm,
             human_class=human_class,
             ceilings={m: c["ceiling"] for m, c in results["noise_ceiling"].items()},
             human=(rsa.HumanAnnotators(counts, config.metric)
                    if config.ci_source == "images+annotators" else None),
             folds=fold_source.fold_images if fold_source else [], fold_human_rdms={},
             fold_layers={l for r in reps for l in r.fold_features},
             figure_idx=figure_idx, human_square=scoring.square_subset(human_rdm, figure_idx, n),
             class_squares={})
  progress = Progress("scoring models", len(reps))
  for k, rep in enumerate(reps):
    scoring.score_representation(rep, run)
    progress.update(k + 1)
  scoring.add_statistics(run)
  scoring.add_fold_statistics(run)
  results["comparisons"] = _comparisons(config, results["rsa"], run)
  results["statistics"] = _statistics(config, results)
  results["seeds"] = alignment.seed_summary(results["rsa"], results["behaviour"])
  primary = [r for r in results["rsa"] if r["method"] == methods[0]]
  results["figures"]["alignment"] = plots.alignment_bars(
      outputs.figure_path(workdir, "alignment"),
      [f"{r['model']}/{r['layer']}" for r in primary], [r["estimate"] for r in primary],
      [r["ci_low"] for r in primary], [r["ci_high"] for r in primary],
      results["noise_ceiling"][methods[0]], f"{methods[0]} with the human RDM")
  results["figures"]["mds_classes"] = plots.mds_panels(
      outputs.figure_path(workdir, "mds_classes"),
      {"CIFAR-10H humans": rsa.square_from_rdm(human_class), **run.class_squares})
  results["figures"] = {k: os.path.relpath(v, workdir) for k, v in results["figures"].items()}
  outputs.atomic_write_text(os.path.join(workdir, outputs.REPORT_FILE), report.render(results))
  _write_scalars(workdir, results)
  outputs.atomic_write_json(os.path.join(workdir, outputs.RESULTS_FILE), results)
  return results
