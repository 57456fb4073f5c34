"""`run_alignment(config, workdir)`: trained models -> features -> RDMs -> alignment with
CIFAR-10H -> rdms/, figures/, results.json, report.md and TensorBoard scalars in `workdir`."""

import dataclasses
import itertools
import os
import time

import numpy as np
from absl import logging
from clu import metric_writers

from align_jax import rsa
from align_jax.analysis import alignment, behaviour, plots, report
from align_jax.data import cifar10, cifar10h
from align_jax.errors import InputError
from align_jax.pipeline import finetune, outputs, representations, split_list
from align_jax.rsa import checks

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"


def _check(config) -> None:
  problems = []
  if config.checkpoint not in ("best", "latest"):
    problems.append(f"checkpoint={config.checkpoint!r} must be 'best' or 'latest'")
  if config.metric not in rsa.METRICS:
    problems.append(f"metric={config.metric!r} must be one of {rsa.METRICS}")
  bad = [m for m in split_list(config.methods) if m not in rsa.METHODS]
  if bad or not split_list(config.methods):
    problems.append(f"methods={config.methods!r} must list some of {rsa.METHODS}")
  for field in ("num_images", "n_bootstrap", "n_permutations", "n_kappa_resamples"):
    if config[field] < 0:
      problems.append(f"{field}={config[field]} must be >= 0")
  if config.num_images and config.num_images < 20:
    problems.append(f"num_images={config.num_images} must be 0 (all) or >= 20")
  for field in ("classifier_layers", "vae_layers"):
    if not split_list(config[field]):
      problems.append(f"{field} is empty: name at least one layer (README, 'Alignment')")
  if config.n_ceiling_splits < 1 or config.figure_images < 10 or config.batch_size < 1:
    problems.append("n_ceiling_splits and batch_size must be >= 1, figure_images >= 10")
  if config.data_dir and not os.path.isdir(os.path.expanduser(config.data_dir)):
    problems.append(f"data_dir={config.data_dir!r} is not a directory (set it, or "
                    "ALIGN_JAX_DATA_DIR, to a data directory; empty means tensorflow-datasets)")
  if problems:
    raise InputError("Bad alignment config:\n  - " + "\n  - ".join(problems))


def _load_data(config):
  data = cifar10.load_cifar10(config.data_dir)
  probs, counts = cifar10h.load_cifar10h(config.data_dir, data.test_labels)
  if config.num_images > len(data.test_labels):
    raise InputError(f"num_images={config.num_images} exceeds the {len(data.test_labels)} test "
                     "images (0 = all).")
  n = config.num_images or len(data.test_labels)
  return data.test_images[:n], data.test_labels[:n].astype(np.int64), probs[:n], counts[:n]


def _gather(config, models: dict[str, str], images: np.ndarray) -> list:
  layers = {"classification": split_list(config.classifier_layers),
            "vae": split_list(config.vae_layers)}
  reps = []
  for label, workdir in models.items():
    if finetune.is_finetune_workdir(workdir):
      reps.extend(representations.from_finetuning(label, workdir, len(images)))
    else:
      reps.append(representations.from_checkpoint(label, workdir, images, layers, config))
  return reps


def _figure_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
  """A seeded subset of image indices, sorted by class (then index), for RDM heatmaps."""
  chosen = np.sort(np.random.default_rng([seed, 7]).permutation(len(labels))[:size])
  return chosen[np.argsort(labels[chosen], kind="stable")]


def _square_subset(condensed: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
  i, j = np.meshgrid(idx, idx, indexing="ij")
  square = condensed[checks.condensed_index(np.minimum(i, j), np.maximum(i, j), n)]
  np.fill_diagonal(square, 0)
  return square


def _ceiling_band(ceiling) -> tuple[float, float]:
  """sqrt(Spearman-Brown) of r_half -+ its standard deviation over splits."""
  band = [np.sqrt(max(2 * r / (1 + r), 0)) for r in (ceiling.r_half - ceiling.r_half_std,
                                                     ceiling.r_half + ceiling.r_half_std)]
  return float(band[0]), float(band[1])


def _comparisons(config, workdir: str, rsa_rows: list[dict], human_path: str) -> list[dict]:
  """Paired bootstrap of every pair of pooled targets of different models that share a layer,
  and of the first layers of two models that share none; Holm correction across that family."""
  method = split_list(config.methods)[0]
  rows = [r for r in rsa_rows if r["method"] == method and r["pooled"]]
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
  if not pairs or not config.n_bootstrap:
    return []
  human = np.load(os.path.join(workdir, human_path))
  files = {(r["model"], r["layer"]): r["rdm_file"] for r in rows}
  out = []
  for k, (ma, la, mb, lb) in enumerate(sorted(pairs)):
    logging.info("Paired bootstrap %d/%d: %s/%s vs %s/%s.", k + 1, len(pairs), ma, la, mb, lb)
    result = rsa.paired_bootstrap(np.load(os.path.join(workdir, files[ma, la])),
                                  np.load(os.path.join(workdir, files[mb, lb])), human, method,
                                  n_resamples=config.n_bootstrap, seed=config.seed)
    out.append({"a": f"{ma}/{la}", "b": f"{mb}/{lb}", "method": method,
                "difference": result.difference, "ci_low": result.ci_low,
                "ci_high": result.ci_high, "p_value": result.p_value,
                "n_bootstrap": config.n_bootstrap})
  for row, adjusted in zip(out, alignment.holm([r["p_value"] for r in out])):
    row["p_holm"] = adjusted
  return out


@dataclasses.dataclass
class _Run:
  """What every model of one alignment run is scored against, and where results go."""
  config: object
  workdir: str
  results: dict
  methods: list[str]
  labels: np.ndarray  # [n] CIFAR-10 labels
  counts: np.ndarray  # [n, 10] CIFAR-10H annotator counts
  human_probs: np.ndarray  # [n, 10]
  human_rdm: np.ndarray  # condensed over n images
  human_class: np.ndarray  # condensed over 10 classes
  ceilings: dict[str, float]  # method -> noise ceiling
  folds: list[np.ndarray]  # fine-tuning folds' held-out image indices ([] without fine-tuning)
  fold_human_rdms: dict[bytes, list[np.ndarray]]  # folds' key -> each fold's human RDM (cache)
  figure_idx: np.ndarray  # images shown in heatmaps, sorted by class
  human_square: np.ndarray  # the human RDM of those images
  class_squares: dict[str, np.ndarray]  # 'label / layer' -> class-level RDM, for the MDS figure


  def human_rdms_of(self, folds: list[np.ndarray]) -> list[np.ndarray]:
    """The human RDM within each fold, computed once per fold assignment."""
    key = b"|".join(np.asarray(f, np.int64).tobytes() for f in folds)
    if key not in self.fold_human_rdms:
      self.fold_human_rdms[key] = [rsa.human_rdm(self.human_probs[idx], self.config.metric)
                                   for idx in folds]
    return self.fold_human_rdms[key]


def _score_representation(rep, run: _Run) -> None:
  """Adds one model's RDMs, statistics, figures and behaviour to run.results."""
  config, workdir, results = run.config, run.workdir, run.results
  methods, n, metric = run.methods, len(run.labels), config.metric
  results["models"][rep.label] = {"model": rep.model, "workdir": os.path.abspath(rep.workdir),
                                  "checkpoint_steps": rep.checkpoint_steps, "source": rep.source}
  panels = {"CIFAR-10H humans": run.human_square}
  for layer, feats in rep.pooled.items():
    start = time.perf_counter()
    model_rdm = np.asarray(rsa.rdm(feats, metric))
    path = outputs.save_rdm(workdir, f"{rep.label}__{layer}", model_rdm, metric=metric,
                            layer=layer, model=rep.label, n_images=n,
                            image_order=f"CIFAR-10 test images 0..{n - 1} (official order)")
    stats = alignment.rdm_statistics(
        model_rdm, run.human_rdm, methods, run.ceilings,
        n_bootstrap=config.n_bootstrap, n_permutations=config.n_permutations, seed=config.seed)
    for method, entry in stats.items():
      results["rsa"].append(dict(model=rep.label, layer=layer, metric=metric, method=method,
                                 n_images=n, seed=config.seed, pooled=True, rdm_file=path,
                                 **entry))
    class_rdm = np.asarray(rsa.class_rdm(feats, run.labels, metric))
    outputs.save_rdm(workdir, f"{rep.label}__{layer}__classes", class_rdm, metric=metric,
                     layer=layer, model=rep.label, n_images=n, image_order="class ids 0..9")
    if layer == next(iter(rep.pooled)):  # the MDS figure shows each model's first layer
      run.class_squares[f"{rep.label} / {layer}"] = rsa.square_from_rdm(class_rdm)
    results["class_rsa"].append(dict(model=rep.label, layer=layer, metric=metric,
                                     **alignment.class_statistics(class_rdm, run.human_class,
                                                                  methods)))
    results["cka"].append({"model": rep.label, "layer": layer,
                           "linear_cka": rsa.linear_cka(feats, run.human_probs)})
    if run.folds:
      results["rsa_folds"].append(dict(model=rep.label, layer=layer, pooled=True, **
                                       alignment.fold_statistics(
                                           [feats[idx] for idx in run.folds],
                                           run.human_rdms_of(run.folds), metric, methods)))
    panels[f"{rep.label} / {layer}"] = _square_subset(model_rdm, run.figure_idx, n)
    logging.info("%s/%s: %s (%.1f s)", rep.label, layer,
                 {m: round(s["estimate"], 4) for m, s in stats.items()},
                 time.perf_counter() - start)
  for layer, fold_feats in rep.fold_features.items():
    results["rsa_folds"].append(dict(model=rep.label, layer=layer, pooled=False, **
                                     alignment.fold_statistics(
                                         fold_feats, run.human_rdms_of(rep.fold_images), metric,
                                         methods)))
  figures = results["figures"]
  figures[f"rdms_{rep.label}"] = plots.rdm_heatmaps(
      outputs.figure_path(workdir, f"rdms_{rep.label}"), panels,
      run.labels[run.figure_idx])
  if rep.probs is not None:
    found = behaviour.behavioural_alignment(rep.probs, run.counts, run.labels,
                                            n_resamples=config.n_kappa_resamples,
                                            seed=config.seed)
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
        f"{rep.label}: {name.replace('_', ' ')}")


def _write_scalars(workdir: str, results: dict) -> None:
  writer = metric_writers.create_default_writer(workdir)
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


def run_alignment(config, workdir: str) -> dict:
  """The whole alignment run (see README, 'Alignment'); returns results.json's content."""
  _check(config)
  models = representations.parse_models(config.models)
  methods = split_list(config.methods)
  images, labels, human_probs, counts = _load_data(config)
  n = len(labels)
  os.makedirs(workdir, exist_ok=True)
  logging.info("Alignment of %s on %d images, %s RDMs, methods %s.", sorted(models), n,
               config.metric, methods)
  results = {"provenance": {"software": outputs.software_provenance(),
                            "data": outputs.data_provenance(config.data_dir),
                            "seed": config.seed},
             "config": config.to_dict(), "n_images": n, "metric": config.metric,
             "methods": methods, "noise_ceiling": {}, "models": {}, "rsa": [], "rsa_folds": [],
             "class_rsa": [], "cka": [], "comparisons": [], "behaviour": {}, "seeds": [],
             "figures": {}}
  human_rdm = np.asarray(rsa.human_rdm(human_probs, config.metric))
  human_path = outputs.save_rdm(workdir, "human__images", human_rdm, metric=config.metric,
                                layer="CIFAR-10H label distributions", model="humans",
                                n_images=n, image_order=f"CIFAR-10 test images 0..{n - 1}")
  human_class = np.asarray(rsa.human_class_rdm(counts, labels, config.metric))
  outputs.save_rdm(workdir, "human__classes", human_class, metric=config.metric,
                   layer="CIFAR-10H confusion rows", model="humans", n_images=n,
                   image_order="class ids 0..9")
  ceilings = {}
  for method in methods:
    logging.info("Noise ceiling (%s, %d splits).", method, config.n_ceiling_splits)
    ceilings[method] = rsa.noise_ceiling(counts, config.metric, method,
                                         config.n_ceiling_splits, config.seed)
    results["noise_ceiling"][method] = {
        "r_half": ceilings[method].r_half, "r_half_std": ceilings[method].r_half_std,
        "r_full": ceilings[method].r_full, "ceiling": ceilings[method].ceiling,
        "band": _ceiling_band(ceilings[method]), "n_splits": config.n_ceiling_splits}
  reps = _gather(config, models, images)
  fold_source = next((r for r in reps if r.fold_images), None)
  figure_idx = _figure_subset(labels, min(config.figure_images, n), config.seed)
  run = _Run(config=config, workdir=workdir, results=results, methods=methods, labels=labels,
             counts=counts, human_probs=human_probs, human_rdm=human_rdm,
             human_class=human_class, ceilings={m: c.ceiling for m, c in ceilings.items()},
             folds=fold_source.fold_images if fold_source else [], fold_human_rdms={},
             figure_idx=figure_idx, human_square=_square_subset(human_rdm, figure_idx, n),
             class_squares={})
  for k, rep in enumerate(reps):
    logging.info("Scoring %s (%d/%d).", rep.label, k + 1, len(reps))
    _score_representation(rep, run)
  results["comparisons"] = _comparisons(config, workdir, results["rsa"], human_path)
  results["seeds"] = alignment.seed_summary(results["rsa"], results["behaviour"])
  primary = [r for r in results["rsa"] if r["method"] == methods[0]]
  results["figures"]["alignment"] = plots.alignment_bars(
      outputs.figure_path(workdir, "alignment"),
      [f"{r['model']}/{r['layer']}" for r in primary], [r["estimate"] for r in primary],
      [r["ci_low"] for r in primary], [r["ci_high"] for r in primary],
      results["noise_ceiling"][methods[0]]["band"], f"{methods[0]} with the human RDM")
  results["figures"]["mds_classes"] = plots.mds_panels(
      outputs.figure_path(workdir, "mds_classes"),
      {"CIFAR-10H humans": rsa.square_from_rdm(human_class), **run.class_squares})
  results["figures"] = {k: os.path.relpath(v, workdir) for k, v in results["figures"].items()}
  outputs.atomic_write_json(os.path.join(workdir, RESULTS_FILE), results)
  outputs.atomic_write_text(os.path.join(workdir, REPORT_FILE), report.render(results))
  _write_scalars(workdir, results)
  return results
