"""The main job: train PhilNet, ResNet-50 and the VAE (num_seeds each), fine-tune PhilNet on
CIFAR-10H (k-fold, hard-label control), then the alignment run and OUT/report.md.

Full study (paper scale, for a GPU: the full recipes, 3 seeds, 10 folds, 1,000 resamples):
  python -m experiments.run_study --workdir=OUT --config=experiments/configs/study.py
Quick (everything on reduced data; under 30 minutes on 2 CPU cores, accuracies far below the
full recipes): append ':quick'.
CPU scale (the largest study one unattended run on 2 CPU cores completes, about 2 hours;
docs/results_cpu.md has the run, its stage times and its results): append ':cpu'. One
seed; PhilNet by the fast recipe for 6 epochs (validated 12 times an epoch in the first 2, every
evaluated checkpoint kept), ResNet-50 with the ImageNet stem 1 epoch, the VAE 3 epochs, all on
45,000 images; the accuracy-matched PhilNet checkpoint; fine-tuning in both modes on 3 folds of
all 10,000 test images (full: 3 epochs per fold) with the temperature baseline; the alignment on all 10,000 images with 200 bootstrap
resamples, 50 permutations and five pre-chosen paired tests. Sub-configs take overrides too,
e.g. --config.philnet.num_epochs=6 or --config.align.n_bootstrap=400 (each adds time).
"""

import os

from align_jax.runtime import config_checks
from experiments.configs import align, common, finetune_cifar10h, philnet, resnet50, vae

QUICK_TRAINING = dict(num_validation=1000, test_subset=1000, eval_batch_size=500,
                      log_every_steps=20)
# ':cpu' is sized from measured stage times to finish within about two hours on 2 CPU cores
# (docs/results_cpu.md lists them: each added PhilNet epoch or 100 resamples adds minutes).
CPU_TRAINING = dict(log_every_steps=50)
# Full fine-tuning at CPU scale: chosen by held-out cross-entropy to the human distributions in
# a sweep on fold 0 of 3 (docs/study.md "Fine-tuning budget").
FINETUNE_EPOCHS = 3
FINETUNE_LEARNING_RATE = 1e-4
CPU_COMPARISONS = ",".join([
    "philnet-seed0/penultimate:resnet50-seed0/penultimate",  # architecture, as trained
    "philnet_matched/penultimate:resnet50-seed0/penultimate",  # architecture, equal accuracy
    "philnet_cifar10h/probs:philnet_cifar10h_control/probs",  # soft vs hard labels, full
    "philnet_cifar10h_head/probs:philnet_cifar10h_head_control/probs",  # the same, head only
    "philnet_cifar10h_head/probs:philnet_cifar10h_temperature/probs",  # beyond calibration?
])


def fields(arg: str | None = None) -> list[tuple[str, object, str]]:
  """The study's fields, (name, default, meaning); each stage's config is a field of its own."""
  sub_variant = "quick" if arg == "quick" else None
  return [
      ("data_dir", os.environ.get("ALIGN_JAX_DATA_DIR", ""),
       "the data directory of every stage ('' = tensorflow-datasets); default "
       "$ALIGN_JAX_DATA_DIR"),
      ("architectures", "philnet,resnet50,vae", "which models the study trains"),
      ("num_seeds", 3, "training seeds per architecture (0..num_seeds-1)"),
      ("finetune_architecture", "philnet",
       "fine-tuned on CIFAR-10H from seed 0 ('' = skip)"),
      ("finetune_modes", "full",
       "'full' and/or 'head' (finetune_cifar10h --help), on the same folds"),
      ("accuracy_matched", "", "ARCH=REFERENCE: also align ARCH's kept evaluated checkpoint "
       "(seed 0) whose validation accuracy is closest to REFERENCE's (label ARCH_matched), so "
       "that architecture is compared at equal accuracy; it needs ARCH's keep_checkpoints >= "
       "its num_epochs x evaluations_per_epoch ('' = skip)"),
      ("philnet", philnet.get_config(), "PhilNet's training config (train_philnet --help)"),
      ("resnet50", resnet50.get_config(), "ResNet-50's training config (train_resnet --help)"),
      ("vae", vae.get_config(), "the VAE's training config (train_vae --help)"),
      ("finetune", finetune_cifar10h.get_config(sub_variant),
       "the CIFAR-10H fine-tuning config (finetune_cifar10h --help)"),
      ("align", align.get_config(sub_variant), "the alignment config (align --help)"),
  ]


HELP = common.meanings(fields())


def get_config(arg: str | None = None):
  quick = arg == "quick"
  config = common.fields_config(fields(arg))
  if quick:
    config.num_seeds = 1
    config.philnet.update(dict(QUICK_TRAINING, train_subset=8000, num_epochs=2,
                               warmup_epochs=0.2))
    config.resnet50.update(dict(QUICK_TRAINING, train_subset=2000, num_epochs=1, batch_size=64,
                                warmup_epochs=0.2))
    config.resnet50.model_kwargs.stem = "imagenet"  # ~4x cheaper on a CPU
    config.vae.update(dict(QUICK_TRAINING, train_subset=10000, num_epochs=1))
  if arg == "cpu":
    config.num_seeds = 1
    # PhilNet: the fast recipe on a 6-epoch schedule (docs/training.md "The fast recipe"),
    # validated 12 times an epoch in its first 2 epochs, where it passes ResNet-50's accuracy,
    # and every evaluated checkpoint kept: the accuracy-matched comparison picks one of them
    config.philnet = philnet.get_config("fast")
    config.philnet.update(dict(CPU_TRAINING, num_epochs=6, warmup_epochs=1.2,
                               evaluations_per_epoch=12, evaluation_epochs=2))
    config.philnet.keep_checkpoints = config_checks.evaluated_checkpoints(config.philnet)
    config.philnet.task_kwargs.test_time_augmentation = ""  # the study scores single views
    # ResNet-50: the ImageNet stem (about a tenth of the CIFAR stem's cost on a CPU) for the
    # one epoch the budget allows
    config.resnet50.update(dict(CPU_TRAINING, num_epochs=1, batch_size=128,
                                warmup_epochs=0.3))
    config.resnet50.model_kwargs.stem = "imagenet"
    config.vae.update(dict(CPU_TRAINING, num_epochs=3))
    config.accuracy_matched = "philnet=resnet50"
    # both fine-tuning modes on the same 3 folds of all 10,000 test images; full: the epochs
    # and learning rate chosen by the sweep on one fold (docs/study.md "Fine-tuning budget");
    # fine-tuned penultimate features kept per fold
    config.finetune_modes = "full,head"
    config.finetune.update(dict(num_folds=3, num_epochs=FINETUNE_EPOCHS,
                                learning_rate=FINETUNE_LEARNING_RATE, layers="penultimate"))
    # all 10,000 images, 200 resamples and 50 permutations (what the budget allows); five
    # pre-chosen paired tests, so that Holm's smallest adjusted p (5 x 2 / 201) can reach 0.05
    config.align.update(dict(n_bootstrap=200, n_permutations=50, n_fold_bootstrap=100,
                             classifier_layers="penultimate,probs", comparisons=CPU_COMPARISONS))
  # ':quick' edits the nested configs above; this only rejects unknown variant names.
  return common.choose_variant(config, arg, {"quick": {}, "cpu": {}})
