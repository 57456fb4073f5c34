"""The alignment study end to end on synthetic data: fine-tuning folds, the alignment run's files
and numbers (recomputed independently from the saved RDMs), the study's stage skipping."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
from scipy.spatial import distance

from align_jax import features
from align_jax.analysis import alignment
from align_jax.data import splits
from align_jax.errors import InputError
from align_jax.pipeline import align, finetune, outputs, representations, study
from experiments.configs import align as align_configs
from experiments.configs import study as study_configs
from tests import conftest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_TRAINING = dict(num_validation=60, train_subset=240, test_subset=60, batch_size=60,
                     eval_batch_size=60, num_epochs=1, warmup_epochs=0.0, log_every_steps=2)
NUM_IMAGES = 120


def tiny_study_config(data_dir: str):
  """PhilNet and the VAE on the fake archive, fine-tuning (both modes) in 2 folds of 120
  images."""
  config = study_configs.get_config("quick")
  config.data_dir = data_dir
  config.architectures = "philnet,vae"
  config.num_seeds = 1
  config.philnet.update(TINY_TRAINING)
  config.vae.update(TINY_TRAINING)
  config.vae.model_kwargs.latent_dim = 8
  config.finetune_modes = "full,head"
  config.finetune.update(dict(test_subset=NUM_IMAGES, num_folds=2, num_epochs=1, batch_size=40,
                              eval_batch_size=40, log_every_steps=2, head_steps=20))
  config.align.update(dict(num_images=NUM_IMAGES, n_bootstrap=4, n_permutations=4,
                           n_ceiling_splits=2, n_kappa_resamples=10, figure_images=40,
                           batch_size=50, n_fold_bootstrap=5))
  return config


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory, fake_archive):
  root = str(tmp_path_factory.mktemp("study"))
  conftest.write_fake_cifar10h(root, conftest.link_fake_archive(fake_archive, root))
  with open(os.path.join(root, "PROVENANCE.json"), "w") as f:
    json.dump({"cifar10": {"stand_in": True}}, f)
  workdir = os.path.join(root, "out")
  config = tiny_study_config(root)
  results = study.run_study(config, workdir)
  return config, workdir, results


def test_study_writes_every_output(finished_study):
  _, workdir, results = finished_study
  labels = {"philnet-seed0", "vae-seed0", "philnet_cifar10h", "philnet_cifar10h_control",
            "philnet_cifar10h_temperature", "philnet_cifar10h_head",
            "philnet_cifar10h_head_control"}
  assert set(results["models"]) == labels
  for name in ("results.json", "report.md", "stages.json"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  figures = set(os.listdir(os.path.join(workdir, "figures")))
  expected = {"alignment.png", "mds_classes.png", "reconstructions_vae-seed0.png",
              "prior_samples_vae-seed0.png"}
  for label in labels:
    expected.add(f"rdms_{label}.png")
    if not label.startswith("vae"):
      expected |= {f"confusion_{label}.png", f"error_matrix_{label}.png"}
  assert expected <= figures, expected - figures
  rdms = set(os.listdir(os.path.join(workdir, "rdms")))
  for name in ["human__images", "human__classes", "philnet-seed0__penultimate",
               "philnet-seed0__logits", "philnet-seed0__probs", "vae-seed0__latent_mean",
               "philnet_cifar10h__probs", "philnet_cifar10h_control__probs"]:
    assert {f"{name}.npy", f"{name}.json"} <= rdms, name
  report = open(os.path.join(workdir, "report.md")).read()
  for figure in results["figures"].values():
    assert f"]({figure})" in report
  assert "CC BY-NC-SA 4.0" in report and "CIFAR-10 (JPEG stand-in)" in report
  provenance = results["provenance"]
  assert provenance["software"]["jax"] and provenance["seed"] == 0
  assert results["models"]["philnet-seed0"]["checkpoint_steps"] == [4]  # 240 images / 60
  saved = features.epoch_metrics(os.path.join(workdir, "train", "philnet-seed0"))[4]
  assert results["models"]["philnet-seed0"]["validation"] == pytest.approx(saved)
  assert f"| `philnet-seed0` | philnet | checkpoint | 4 | {saved['accuracy']:.4f} |" in report
  assert results["models"]["philnet_cifar10h"]["validation"] == {}  # out of fold: no one step
  assert results["seeds"] == []  # one seed: nothing to summarise


def test_results_match_scipy_on_the_saved_rdms(finished_study):
  _, workdir, results = finished_study
  human = np.load(os.path.join(workdir, "rdms", "human__images.npy"))
  n = results["n_images"]
  assert human.shape == (n * (n - 1) // 2,)
  checked = 0
  for row in results["rsa"]:
    model = np.load(os.path.join(workdir, row["rdm_file"]))
    if row["method"] == "spearman":
      expected = scipy.stats.spearmanr(model, human).statistic
    else:  # rho-a: 12 sum (r_a - m)(r_b - m) / (N^3 - N) on average ranks
      num = len(model)
      centred = [scipy.stats.rankdata(v) - (num + 1) / 2 for v in (model, human)]
      expected = 12 * np.dot(*centred) / (num ** 3 - num)
    assert row["estimate"] == pytest.approx(expected, abs=1e-9), row
    assert row["ci_low"] <= row["ci_high"] and 0 < row["p_permutation"] <= 1
    ceiling = results["noise_ceiling"][row["method"]]["ceiling"]
    assert row["fraction_of_ceiling"] == pytest.approx(row["estimate"] / ceiling)
    checked += 1
  assert checked == 2 * 9  # 2 methods x (PhilNet's 3 layers + VAE + 5 fine-tuned probs)
  sidecar = json.load(open(os.path.join(workdir, "rdms", "philnet-seed0__probs.json")))
  assert sidecar["metric"] == "correlation" and sidecar["n_images"] == n
  human_classes = np.load(os.path.join(workdir, "rdms", "human__classes.npy"))
  for row in results["class_rsa"]:
    model = np.load(os.path.join(workdir, "rdms", f"{row['model']}__{row['layer']}__classes.npy"))
    assert row["spearman"] == pytest.approx(
        scipy.stats.spearmanr(model, human_classes).statistic, abs=1e-9)


def test_human_rdm_file_is_scipy_pdist_of_cifar10h(finished_study):
  config, workdir, _ = finished_study
  probs = np.load(os.path.join(config.data_dir, "cifar10h", "cifar10h-probs.npy"))[:NUM_IMAGES]
  np.testing.assert_allclose(np.load(os.path.join(workdir, "rdms", "human__images.npy")),
                             distance.pdist(probs, "correlation"), atol=1e-6)


def test_out_of_fold_predictions_come_from_the_fold_that_held_each_image_out(finished_study):
  _, workdir, _ = finished_study
  ft = os.path.join(workdir, "finetune", "full")
  marker = finetune.read_marker(ft)
  with np.load(os.path.join(ft, "cifar10h", finetune.OUT_OF_FOLD_FILE)) as arrays:
    folds, probs = arrays["folds"], arrays["probs"]
  np.testing.assert_array_equal(folds, splits.fold_assignment(NUM_IMAGES, 2, marker["seed"]))
  data = splits.cifar10.load_cifar10(os.path.dirname(workdir))
  for fold in range(2):
    trained = representations.features.load_trained(
        os.path.join(ft, "cifar10h", f"fold_{fold:02d}"), "latest")
    held_out = np.flatnonzero(folds == fold)
    logits = representations.features.extract_features(
        trained, data.test_images[held_out], ["logits"])["logits"]
    np.testing.assert_allclose(probs[held_out], representations.features.softmax(logits), atol=1e-5)


def test_kfold_training_never_sees_its_held_out_images(fake_study_data_dir):
  config = study_configs.get_config("quick").finetune
  config.data_dir = fake_study_data_dir
  config.test_subset, config.num_folds = 90, 3
  seen = np.zeros(90, int)
  data = splits.cifar10.load_cifar10(fake_study_data_dir)
  key = lambda images: {bytes(image) for image in images}
  for fold in range(3):
    config.fold = fold
    split = splits.load_training_splits(config)
    assert not key(split["train"]["image"]) & key(split["test"]["image"])
    assert len(split["train"]["label"]) + len(split["test"]["label"]) == 90
    held = [i for i in range(90) if bytes(data.test_images[i]) in key(split["test"]["image"])]
    seen[held] += 1
    probs = split["test"]["human_probs"]
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-6)
  np.testing.assert_array_equal(seen, 1)  # every image is held out exactly once


def test_rerun_skips_finished_stages_and_refuses_changed_ones(finished_study):
  config, workdir, results = finished_study
  stages = os.path.join(workdir, "stages.json")
  before = os.path.getmtime(stages)
  again = study.run_study(config, workdir)
  assert again["rsa"] == results["rsa"] and os.path.getmtime(stages) == before
  changed = config.copy_and_resolve_references()
  changed.philnet.learning_rate = 0.5
  with pytest.raises(InputError, match="different config"):
    study.run_study(changed, workdir)


def test_seed_summary_gives_mean_and_spread_across_seed_labels():
  rows = [{"model": m, "layer": "penultimate", "method": "spearman", "pooled": True,
           "estimate": e} for m, e in (("philnet-seed0", 0.3), ("philnet-seed1", 0.5),
                                       ("vae-seed0", 0.1))]
  behaviours = {m: {"accuracy": a, "human_cross_entropy": 1.0, "human_kl": 0.8}
                for m, a in (("philnet-seed0", 0.6), ("philnet-seed1", 0.7))}
  summary = alignment.seed_summary(rows, behaviours)
  by_measure = {s["method"]: s for s in summary}
  assert {s["group"] for s in summary} == {"philnet"}  # one vae seed: nothing to summarise
  assert by_measure["spearman"]["mean"] == pytest.approx(0.4)
  assert by_measure["spearman"]["std"] == pytest.approx(np.std([0.3, 0.5], ddof=1))
  assert by_measure["accuracy"]["mean"] == pytest.approx(0.65)


def test_a_data_directory_without_provenance_is_not_marked_as_stand_in(tmp_path):
  assert not outputs.data_provenance(str(tmp_path))["cifar10_stand_in"]


def test_holm_matches_hand_computed_adjustment():
  # sorted p: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06
  assert alignment.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
  assert alignment.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_fold_assignment_is_balanced_and_seeded():
  folds = splits.fold_assignment(103, 10, seed=3)
  assert sorted(np.bincount(folds)) == [10] * 7 + [11] * 3
  np.testing.assert_array_equal(folds, splits.fold_assignment(103, 10, seed=3))
  assert not np.array_equal(folds, splits.fold_assignment(103, 10, seed=4))
  with pytest.raises(InputError, match="num_folds"):
    splits.fold_assignment(5, 10, seed=0)
  assert splits.protocol_size(0, 10_000) == 10_000 and splits.protocol_size(300, 10_000) == 300
  with pytest.raises(InputError, match="test_subset=20000"):
    splits.protocol_size(20_000, 10_000)


def test_bad_model_entries_and_config_are_explained(tmp_path):
  with pytest.raises(InputError, match="label=WORKDIR"):
    representations.parse_models("philnet")
  with pytest.raises(InputError, match="not a training or fine-tuning workdir"):
    representations.parse_models(f"philnet={tmp_path}")
  config = align_configs.get_config("quick")
  config.update(dict(models=f"a={tmp_path}", metric="manhattan", methods="spearman,pearsonr",
                     data_dir=str(tmp_path), classifier_layers=" "))
  with pytest.raises(InputError) as error:
    align.run_alignment(config, str(tmp_path / "out"))
  assert "metric='manhattan'" in str(error.value) and "pearsonr" in str(error.value)
  assert "classifier_layers is empty" in str(error.value)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
  path = str(tmp_path / "results.json")
  outputs.atomic_write_json(path, {"a": 1})
  with pytest.raises(TypeError):
    outputs.atomic_write_json(path, {"a": object()})
  assert json.load(open(path)) == {"a": 1}


def test_align_entry_point_fails_without_traceback(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.align", f"--workdir={tmp_path}",
       f"--config.models=philnet={tmp_path}/missing", f"--config.data_dir={tmp_path}"],
      cwd=ROOT, capture_output=True, text=True, check=False)
  assert proc.returncode != 0
  assert "error: philnet=" in proc.stderr and "Traceback" not in proc.stderr
  help_text = subprocess.run([sys.executable, "-m", "experiments.run_study", "--help"],
                             cwd=ROOT, capture_output=True, text=True, check=False).stdout
  assert "--workdir=DIR" in help_text and "finetune_architecture ('philnet')" in help_text


def test_alignment_outputs_are_replaced_as_a_set(finished_study, tmp_path, monkeypatch):
  """A rerun over other images that dies midway leaves the
  previous run's files, all of one run; a finished rerun replaces every one of them."""
  config, workdir, _ = finished_study
  small = config.align.copy_and_resolve_references()
  small.update(dict(models=f"philnet={workdir}/train/philnet-seed0", data_dir=config.data_dir,
                    methods="spearman", n_bootstrap=2, n_permutations=2, n_ceiling_splits=1,
                    figure_images=20, classifier_layers="probs"))
  out = str(tmp_path / "align")

  def consistent(n: int) -> None:
    results = json.load(open(os.path.join(out, "results.json")))
    assert results["n_images"] == n
    rdm_dir = os.path.join(out, "rdms")
    for name in os.listdir(rdm_dir):
      if name.endswith(".json"):
        sidecar = json.load(open(os.path.join(rdm_dir, name)))
        assert sidecar["run_id"] == results["provenance"]["run_id"], name
        if "classes" not in name:
          assert sidecar["num_pairs"] == n * (n - 1) // 2, name
    events = [f for f in os.listdir(out) if f.startswith("events.out.tfevents")]
    assert len(events) == 1  # one run's scalars, not one file per rerun

  small.num_images = 120
  align.run_alignment(small, out)
  consistent(120)
  small.num_images = 100
  monkeypatch.setattr(align.plots, "alignment_bars",
                      lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed midway")))
  with pytest.raises(RuntimeError, match="killed midway"):
    align.run_alignment(small, out)
  consistent(120)
  monkeypatch.undo()
  align.run_alignment(small, out)
  consistent(100)
  assert not os.path.exists(os.path.join(out, outputs.STAGING_DIR))


def test_a_rerun_reuses_features_rdms_and_statistics(finished_study, tmp_path, monkeypatch):
  """The same config again: nothing expensive is recomputed and every number is the same; a
  changed resample count recomputes the statistics it affects."""
  config, workdir, _ = finished_study
  small = config.align.copy_and_resolve_references()
  small.update(dict(models=f"philnet={workdir}/train/philnet-seed0,vae={workdir}/train/vae-seed0",
                    data_dir=config.data_dir, num_images=100, methods="spearman",
                    n_bootstrap=3, n_permutations=3, n_ceiling_splits=1, figure_images=20,
                    classifier_layers="probs"))
  out = str(tmp_path / "cached")
  first = align.run_alignment(small, out)

  def recomputed(*args, **kwargs):
    raise AssertionError("recomputed although nothing changed")

  for module, name in ((representations.features, "extract_features"), (align.rsa, "rdm"),
                       (align.rsa, "bootstrap_methods"), (align.rsa, "permutation_test"),
                       (align.rsa, "noise_ceilings"), (align.rsa, "paired_bootstrap"),
                       (align.rsa, "resample_jointly")):
    monkeypatch.setattr(module, name, recomputed)
  again = align.run_alignment(small, out)
  assert again["rsa"] == first["rsa"] and again["noise_ceiling"] == first["noise_ceiling"]
  assert again["comparisons"] == first["comparisons"]
  monkeypatch.undo()
  calls = []
  original = align.rsa.resample_jointly
  monkeypatch.setattr(align.rsa, "resample_jointly",
                      lambda *a, **k: calls.append((sorted(a[0]), k["n_bootstrap"]))
                      or original(*a, **k))
  small.n_bootstrap = 4
  align.run_alignment(small, out)
  assert calls == [(["philnet/probs", "vae/latent_mean"], 4)]  # one joint pass


def _base_outputs(config, workdir):
  """The starting PhilNet's (best checkpoint) penultimate features and logits of the fine-tuning
  images, and their human distributions."""
  data = splits.cifar10.load_cifar10(config.data_dir)
  trained = representations.features.load_trained(
      os.path.join(workdir, "train", "philnet-seed0"), "best")
  base = representations.features.extract_features(
      trained, data.test_images[:NUM_IMAGES], ["penultimate", "logits"])
  human = np.load(os.path.join(config.data_dir, "cifar10h", "cifar10h-probs.npy"))[:NUM_IMAGES]
  return trained, base, human


def test_head_mode_refits_only_the_head_on_the_training_folds(finished_study):
  """Out-of-fold probs of mode='head' are the frozen network's penultimate features through a
  head refitted (from the trained head) on the other folds' targets alone."""
  config, workdir, _ = finished_study
  ft = os.path.join(workdir, "finetune", "head")
  marker = finetune.read_marker(ft)
  assert marker["mode"] == "head" and "temperature" not in marker["targets"]  # first mode's
  trained, base, human = _base_outputs(config, workdir)
  params = trained.variables["params"][marker["targets"]["cifar10h"]["head"]]
  with np.load(os.path.join(ft, "cifar10h", finetune.OUT_OF_FOLD_FILE)) as arrays:
    folds, probs, kernels = arrays["folds"], arrays["probs"], arrays["head_kernels"]
    # of layers 'penultimate,logits' only the refitted logits change, so only they are kept
    assert [k for k in arrays.files if k.startswith("features/")] == ["features/logits"]
    logits = arrays["features/logits"]
  for fold in range(2):
    train, held = folds != fold, folds == fold
    corrupted = human.copy()
    corrupted[held] = np.roll(corrupted[held], 3, axis=1)  # held-out targets must not matter
    kernel, bias = finetune.heads.fit_head(
        base["penultimate"][train], corrupted[train], params["kernel"], params["bias"],
        steps=config.finetune.head_steps, learning_rate=config.finetune.head_learning_rate,
        weight_decay=config.finetune.weight_decay)
    np.testing.assert_allclose(kernels[fold], kernel, atol=1e-5)
    np.testing.assert_allclose(probs[held], representations.features.softmax(
        base["penultimate"][held] @ kernel + bias), atol=1e-5)
    np.testing.assert_allclose(logits[np.sort(folds) == fold],
                               base["penultimate"][held] @ kernel + bias, atol=1e-4)


def test_full_finetuning_trains_each_fold_by_the_study_config(finished_study):
  """The epochs and learning rate of the folds are the study's finetune fields (where :cpu puts
  the values its sweep chose), not constants of the fine-tuning code."""
  config, workdir, _ = finished_study
  marker = finetune.read_marker(os.path.join(workdir, "finetune", "full"))
  for target in ("cifar10h", "cifar10"):
    for fold, fold_dir in enumerate(marker["targets"][target]["fold_workdirs"]):
      with open(os.path.join(fold_dir, "config.json")) as f:
        saved = json.load(f)
      assert (saved["num_epochs"], saved["learning_rate"], saved["fold"]) == (
          config.finetune.num_epochs, config.finetune.learning_rate, fold)
      train_images = NUM_IMAGES - NUM_IMAGES // config.finetune.num_folds
      steps = config.finetune.num_epochs * (train_images // config.finetune.batch_size)
      assert marker["targets"][target]["steps"][fold] == steps


def test_the_finetune_entry_point_summarises_every_target_of_both_modes(finished_study):
  from experiments import finetune_cifar10h
  _, workdir, _ = finished_study
  for mode in ("full", "head"):
    ft = os.path.join(workdir, "finetune", mode)
    text = finetune_cifar10h._summary(finetune.read_marker(ft), ft)
    assert text.startswith(f"done ({mode}): cifar10h: held-out accuracy per fold [")
    assert ("temperature: temperature per fold [" in text) == (mode == "full")


def test_temperature_baseline_is_fitted_per_fold_out_of_fold(finished_study):
  config, workdir, _ = finished_study
  ft = os.path.join(workdir, "finetune", "full")
  _, base, human = _base_outputs(config, workdir)
  with np.load(os.path.join(ft, "temperature", finetune.OUT_OF_FOLD_FILE)) as arrays:
    folds, probs, temperatures = arrays["folds"], arrays["probs"], arrays["temperatures"]
  for fold in range(2):
    train, held = folds != fold, folds == fold
    t = finetune.heads.fit_temperature(base["logits"][train], human[train])
    assert temperatures[fold] == pytest.approx(t, rel=1e-4)
    np.testing.assert_allclose(probs[held], representations.features.softmax(
        base["logits"][held] / t), atol=1e-5)


def test_fold_rows_have_a_ci_of_the_fold_mean_and_the_ceiling_of_the_same_images(finished_study):
  config, workdir, results = finished_study
  rows = {(r["model"], r["layer"], r["pooled"]): r for r in results["rsa_folds"]}
  # the fine-tuned networks' own features (head mode: the refitted logits only), and the
  # models sharing those layers on the same folds
  assert set(rows) == {(m, l, False) for m in ("philnet_cifar10h", "philnet_cifar10h_control")
                       for l in ("penultimate", "logits")} | {
      ("philnet_cifar10h_head", "logits", False), ("philnet_cifar10h_head_control", "logits",
                                                   False),
      ("philnet-seed0", "penultimate", True), ("philnet-seed0", "logits", True)}
  folds = splits.fold_assignment(NUM_IMAGES, 2, config.finetune.seed)
  counts = np.load(os.path.join(config.data_dir, "cifar10h", "cifar10h-counts.npy"))[:NUM_IMAGES]
  base_row = rows["philnet-seed0", "penultimate", True]
  # reference: the run's saved all-image RDMs, cut to each fold by scipy's squareform
  saved = {name: distance.squareform(np.load(os.path.join(workdir, "rdms", f"{name}.npy")))
           for name in ("philnet-seed0__penultimate", "human__images")}
  within = lambda name, k: distance.squareform(saved[name][np.ix_(folds == k, folds == k)],
                                               checks=False)
  per_fold = [scipy.stats.spearmanr(within("philnet-seed0__penultimate", k),
                                    within("human__images", k)).statistic for k in range(2)]
  np.testing.assert_allclose(base_row["spearman"]["per_fold"], per_fold, atol=1e-6)
  ceilings = [
      align.rsa.noise_ceilings(counts[folds == k], "correlation", ["spearman"], n_splits=2,
                               seed=0)["spearman"].ceiling for k in range(2)]
  for row in rows.values():
    for method in results["methods"]:
      entry = row[method]
      assert entry["ci_low"] < entry["ci_high"]
      assert entry["ceiling"] == pytest.approx(np.mean(ceilings) if method == "spearman"
                                               else entry["ceiling"])
      assert entry["fraction_of_ceiling"] == pytest.approx(entry["mean"] / entry["ceiling"])
  report = open(os.path.join(workdir, "report.md")).read()
  assert "Within-fold RSA" in report and "÷ ceiling (spearman)" in report


def test_accuracy_matched_checkpoint_is_the_closest_kept_epoch(monkeypatch):
  metrics = {"W": {100: {"accuracy": 0.40}, 200: {"accuracy": 0.55}, 300: {"accuracy": 0.70}},
             "R": {50: {"accuracy": 0.3}, 90: {"accuracy": 0.52}}}
  monkeypatch.setattr(study.features, "epoch_metrics", lambda w: metrics[w])
  monkeypatch.setattr(study.features, "checkpoint_step", lambda w, which: 90)
  assert study.matched_checkpoint("W", "R", "best") == {
      "step": 200, "accuracy": 0.55, "reference_accuracy": 0.52}


def test_a_model_entry_can_name_its_own_checkpoint(finished_study, tmp_path):
  _, workdir, _ = finished_study
  train = os.path.join(workdir, "train", "philnet-seed0")
  assert representations.parse_models(f"a={train}@4") == {"a": f"{train}@4"}
  assert representations.split_checkpoint(f"{train}@4", "best") == (train, "4")
  assert representations.split_checkpoint(train, "best") == (train, "best")
  assert representations.features.checkpoint_step(train, "4") == 4
  with pytest.raises(InputError, match=r"no epoch-end checkpoint at step 3; kept steps: \[4\]"):
    representations.features.checkpoint_step(train, "3")
  with pytest.raises(InputError, match="has no config.json"):
    representations.parse_models(f"a={tmp_path}@best")
  align_config = align_configs.get_config("quick")
  align_config.update(dict(models=f"a={train}@3", data_dir=os.path.dirname(workdir)))
  with pytest.raises(InputError, match="no epoch-end checkpoint at step 3"):
    align.run_alignment(align_config, str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out")  # refused before anything was written


def test_comparisons_name_the_tested_pairs_and_unknown_targets_fail_early(finished_study,
                                                                         tmp_path):
  config, workdir, _ = finished_study
  from align_jax.runtime import config_checks
  assert config_checks.comparison_pairs("a/probs:b-seed0/x, c/y:d/z") == [
      ("a", "probs", "b-seed0", "x"), ("c", "y", "d", "z")]
  with pytest.raises(InputError, match="MODEL/LAYER:MODEL/LAYER"):
    config_checks.comparison_pairs("a/probs")
  align_config = config.align.copy_and_resolve_references()
  train = os.path.join(workdir, "train", "philnet-seed0")
  align_config.update(dict(data_dir=config.data_dir, models=f"a={train},b={train}@4",
                           comparisons="a/probs:b/probs"))
  results = align.run_alignment(align_config, str(tmp_path / "one"))
  assert [(c["a"], c["b"]) for c in results["comparisons"]] == [("a/probs", "b/probs")]
  assert results["comparisons"][0]["difference"] == pytest.approx(0.0, abs=1e-12)  # same step
  align_config.comparisons = "a/probs:c/probs"
  with pytest.raises(InputError, match="names c/probs, which this run does not score"):
    align.run_alignment(align_config, str(tmp_path / "two"))
