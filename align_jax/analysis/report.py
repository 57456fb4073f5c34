"""report.md of an alignment run, rendered from results.json's content (nothing recomputed)."""

from align_jax.analysis.plots import CLASS_NAMES

CITATION = (
    "Human judgements: CIFAR-10H, J. C. Peterson, R. M. Battleday, T. L. Griffiths and O. "
    "Russakovsky, *Human uncertainty makes classification more robust*, ICCV 2019; data licensed "
    "CC BY-NC-SA 4.0 (github.com/jcpeterson/cifar-10h). Images: CIFAR-10, A. Krizhevsky, "
    "*Learning multiple layers of features from tiny images*, 2009.")


def _num(value, digits: int = 3) -> str:
  return "–" if value is None else f"{value:.{digits}f}"


def _ci(row: dict) -> str:
  return "–" if row.get("ci_low") is None else f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _pairs(pairs) -> str:
  return ", ".join(f"{CLASS_NAMES[i]}↔{CLASS_NAMES[j]} {rate:.3f}" for i, j, rate in pairs[:3])


def _data_lines(results: dict) -> list[str]:
  """Where the images, the human data and each model's numbers come from: models given as
  files bring arrays computed elsewhere, the others' features were computed here from the
  data directory's images (which may be the JPEG stand-in)."""
  data = results["provenance"]["data"]
  files = [label for label, m in results["models"].items() if m["model"] == "file"]
  computed = [label for label in results["models"] if label not in files]
  lines = [f"- Images: the first {results['n_images']:,} CIFAR-10 test images (official order); "
           f"RDM metric `{results['metric']}`; methods {', '.join(results['methods'])}; "
           f"seed {results['provenance']['seed']}.",
           f"- Data directory: `{data['data_dir']}`."]
  if files:
    lines.insert(0, f"> **Models given as files: {_names(files)}.** Their arrays were computed "
                 "elsewhere, by whoever made the files; here they are scored against CIFAR-10H "
                 "and the CIFAR-10 test labels, both in the official order"
                 + (" (the data directory's stand-in images keep the official labels)."
                    if data["cifar10_stand_in"] else ".") + "\n")
  if data["cifar10_stand_in"] and computed:
    lines.insert(0, "> **CIFAR-10 (JPEG stand-in).** The features of "
                 f"{_names(computed)} were computed here from JPEG copies of the CIFAR-10 "
                 "images (the data directory's PROVENANCE.json says so): their numbers are "
                 "estimates of the figures on the official archive.\n")
  return lines


def _names(labels: list[str]) -> str:
  return ", ".join(f"`{label}`" for label in labels)


def _models_lines(results: dict) -> list[str]:
  """Which checkpoint of each model was scored, and its validation accuracy where it has one
  (how an accuracy-matched checkpoint compares with its reference); workdirs in Provenance."""
  rows = []
  for label, m in results["models"].items():
    accuracy = m.get("validation", {}).get("accuracy")
    steps = sorted(set(m["checkpoint_steps"]))
    rows.append([f"`{label}`", m["model"], m["source"], ", ".join(map(str, steps)) or "–",
                 "–" if accuracy is None else _num(accuracy, 4)])
  return ["", "## Models", ""] + _table(
      ["model", "kind", "source", "checkpoint step(s)", "validation accuracy"], rows)


def _statistics_lines(results: dict) -> list[str]:
  """The header every reader needs before any number: what the uncertainty rests on."""
  st = results["statistics"]
  interval = {"percentile": "percentile", "centred": "bias-centred percentile",
              None: "no"}[st["ci_interval"]]
  return [f"- Statistics: {st['n_bootstrap']:,} bootstrap resamples (CI source `{st['ci_source']}`, "
          f"{interval} 95% intervals), {st['n_permutations']:,} permutations, noise ceiling "
          f"`{st['ceiling_estimator']}` calibrated on {st['n_ceiling_splits']} annotator split "
          "halves."]


def _family_note(family: dict, what: str, knob: str) -> str | None:
  """Words for a p-value family that cannot reach significance whatever the data (None if it
  can): its floor, the family size and the smallest Holm-adjusted p possible."""
  if family["significance_reachable"] or not family["tests"]:
    return None
  return (f"With {family['resamples']:,} {what} the smallest possible p is {family['floor']:.4f}; "
          f"Holm's correction over the {family['tests']} tests leaves no adjusted p below "
          f"{family['min_holm_p']:.3f}, so nothing here can be significant at "
          f"{family['alpha']}. p-values are not shown; `{knob}` >= "
          f"{family['resamples_needed']:,} makes significance possible.")


def _summary(results: dict) -> list[str]:
  """One row per model and pooled layer: the numbers the study is about."""
  by_key = {}
  for r in results["rsa"]:
    by_key.setdefault((r["model"], r["layer"]), {})[r["method"]] = r
  rows = []
  for (model, layer), per_method in by_key.items():
    cells = [model, layer]
    for method in results["methods"][:2]:
      r = per_method[method]
      cells += [f"{_num(r['estimate'])} {_ci(r)}", _num(r["fraction_of_ceiling"])]
    first = per_method[results["methods"][0]]
    if _show_permutation_p(results):
      cells += [_num(first["p_permutation"], 4), _num(first.get("p_permutation_holm"), 4)]
    b = results["behaviour"].get(model)
    cells += ([_num(b["accuracy"]), _num(b["human_cross_entropy"]), _num(b["human_kl"]),
               _num(b["error_consistency"]["kappa"])] if b else ["–"] * 4)
    rows.append(cells)
  header = ["model", "layer"]
  for method in results["methods"][:2]:
    header += [f"{method} [95% CI]", "÷ ceiling"]
  if _show_permutation_p(results):
    header += ["perm. p", "p (Holm)"]
  header += ["accuracy", "CE", "KL", "kappa"]
  return _table(header, rows)


def _show_permutation_p(results: dict) -> bool:
  family = results["statistics"]["permutations"]
  return family["tests"] > 0 and family["significance_reachable"]


def render(results: dict) -> str:
  """The markdown report: data, noise ceiling, alignment, folds, behaviour, comparisons."""
  out = ["# align_jax alignment report", ""] + _data_lines(results) + _statistics_lines(results)
  out += _models_lines(results)
  out += ["", "## Human noise ceiling", "",
          "The score a perfect model (the true label distributions) would get against this "
          "finite-annotator human RDM, estimated by posterior draws of every image's label "
          "distribution under an empirical-Bayes latent-class prior whose size reproduces the "
          "observed split-half correlation (validated within 0.02 of the perfect model's score "
          "in simulations with known truths; align_jax's docs/rsa_statistics.md, 'Noise "
          "ceiling'). Spearman-Brown on the split halves assumes additive noise and reads too "
          "high; it is shown for reference "
          "only.", ""]
  out += _table(["method", "ceiling", "band", "r_half ± sd", "Spearman-Brown (reference)"],
                [[m, _num(c["ceiling"]), f"[{c['band'][0]:.3f}, {c['band'][1]:.3f}]",
                  f"{_num(c['r_half'])} ± {_num(c['r_half_std'])}", _num(c["spearman_brown"])]
                 for m, c in results["noise_ceiling"].items()])
  out += ["", "## Alignment with CIFAR-10H", "",
          "RDM correlation with the per-image human RDM on all images (bootstrap 95% CI), as a "
          "fraction of the noise ceiling; permutation p-values are one-sided, raw and "
          "Holm-corrected over every model x layer x method test; behaviour against CIFAR-10 "
          "labels and human label distributions (CE and KL = CE - human entropy floor, nats; "
          "model probabilities are clipped at 1e-12, so one image adds at most 27.6 nats; "
          "kappa = error consistency). Fine-tuned models use pooled out-of-fold predictions "
          "(`probs`).", ""]
  note = _family_note(results["statistics"]["permutations"], "permutations", "n_permutations")
  if note:
    out += [note, ""]
  out += _summary(results)
  out += ["", f"![alignment]({results['figures']['alignment']})", ""]
  if results["rsa_folds"]:
    out += ["## Within-fold RSA (fine-tuning folds)", "",
            "Each fold's held-out images only, averaged over folds: mean [95% CI of the mean; "
            "images resampled within each fold] and the fraction of the noise ceiling of the "
            "same images (the mean of the folds' ceilings). Rows marked `own fold networks` are "
            "the k fine-tuned networks' own features (they share no feature space, so they are "
            "scored within folds only); other rows score the same models on the same folds for "
            "comparison.", ""]
    first = results["rsa_folds"][0]
    out += [f"Folds: {first['num_folds']}; ceiling: "
            + ", ".join(f"{m} {_num(first[m]['ceiling'])}" for m in results["methods"])
            + f"; {first['n_bootstrap']} resamples per fold ({first['ci_source']}).", ""]
    out += _table(["model", "layer", "own fold networks"] +
                  [f"{m} [95% CI]" for m in results["methods"]] +
                  [f"÷ ceiling ({m})" for m in results["methods"]],
                  [[r["model"], r["layer"], "yes" if not r["pooled"] else "no"] +
                   [f"{_num(r[m]['mean'])} {_ci(r[m])}" for m in results["methods"]] +
                   [_num(r[m]["fraction_of_ceiling"]) for m in results["methods"]]
                   for r in results["rsa_folds"]])
    out.append("")
  out += ["## Class-level RSA and CKA", ""]
  cka = {(r["model"], r["layer"]): r["linear_cka"] for r in results["cka"]}
  out += _table(["model", "layer"] + [f"class {m}" for m in results["methods"]] +
                ["linear CKA vs human probs"],
                [[r["model"], r["layer"]] + [_num(r[m]) for m in results["methods"]] +
                 [_num(cka[r["model"], r["layer"]])] for r in results["class_rsa"]])
  out += ["", f"![class MDS]({results['figures']['mds_classes']})", ""]
  if results["behaviour"]:
    out += ["## Behaviour", ""]
    out += _table(["model", "accuracy", "vs human majority", "CE", "floor", "KL", "ECE",
                   "kappa [95% CI]", "most confused (model)"],
                  [[m, _num(b["accuracy"]), _num(b["accuracy_vs_human_majority"]),
                    _num(b["human_cross_entropy"]), _num(b["human_entropy_floor"], 4),
                    _num(b["human_kl"]), _num(b["ece"]),
                    f"{_num(b['error_consistency']['kappa'])} {_ci(b['error_consistency'])}",
                    _pairs(b["most_confused"])] for m, b in results["behaviour"].items()])
    first = next(iter(results["behaviour"].values()))
    out += ["", f"Humans' most confused pairs: {_pairs(first['human_most_confused'])}.", ""]
  if results["comparisons"]:
    out += ["## Model differences (paired bootstrap, Holm-corrected)", ""]
    note = _family_note(results["statistics"]["comparisons"], "bootstrap resamples",
                        "n_bootstrap")
    show_p = note is None
    out += ([note, ""] if note else [])
    out += _table(["a", "b", "method", "a - b [95% CI]"] + (["p", "p (Holm)"] if show_p else []),
                  [[c["a"], c["b"], c["method"], f"{_num(c['difference'])} {_ci(c)}"] +
                   ([_num(c["p_value"], 4), _num(c["p_holm"], 4)] if show_p else [])
                   for c in results["comparisons"]])
    out.append("")
  if results["seeds"]:
    out += ["## Across training seeds", ""]
    out += _table(["group", "layer", "measure", "seeds", "mean ± sd"],
                  [[s["group"], s["layer"], s["method"], s["n_seeds"],
                    f"{s['mean']:.3f} ± {s['std']:.3f}"] for s in results["seeds"]])
    out.append("")
  out += ["## Figures", ""]
  out += [f"![{name}]({path})" for name, path in results["figures"].items()
          if name not in ("alignment", "mds_classes")]
  software = results["provenance"]["software"]
  out += ["", "## Provenance", "",
          "- Software: " + ", ".join(f"{k} {v}" for k, v in software.items()) + "."]
  out += [f"- `{label}`: arrays from the model file `{m['workdir']}`."
          if m["model"] == "file" else f"- `{label}`: `{m['workdir']}`."
          for label, m in results["models"].items()]
  out += ["", CITATION, ""]
  return "\n".join(out)
