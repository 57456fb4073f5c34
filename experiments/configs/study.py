"""The main job: train PhilNet, ResNet-50 and the VAE (num_seeds each), fine-tune PhilNet on
CIFAR-10H (k-fold, hard-label control), then the alignment run and OUT/report.md.

Full study (paper scale, for a GPU: the full recipes, 3 seeds, 10 folds, 1,000 resamples):
  python -m experiments.run_study --workdir=OUT --config=experiments/configs/study.py
Quick (everything on reduced data; under 30 minutes on 2 CPU cores, accuracies far below the
full recipes): append ':quick'.
CPU scale (the largest study one unattended run on 2 CPU cores completes: measured 1 h 55 min
on quiet cores, under the 2-hour aim; README, "Results at CPU scale"): append ':cpu'. One
seed; PhilNet 5 epochs (every epoch-end checkpoint kept), ResNet-50 with the ImageNet stem 1
epoch, the VAE 3 epochs, all on 45,000 images; the
accuracy-matched PhilNet checkpoint; fine-tuning in both modes on 3 folds of all 10,000 test
images with the temperature baseline; the alignment on all 10,000 images with 200 bootstrap
resamples, 50 permutations and five pre-chosen paired tests. Sub-configs take overrides too,
e.g. --config.philnet.num_epochs=6 or --config.align.n_bootstrap=400 (each adds time).
"""

import os

import ml_collections

from experiments.configs import align, common, finetune_cifar10h, philnet, resnet50, vae

QUICK_TRAINING = dict(num_validation=1000, test_subset=1000, eval_batch_size=500,
                      log_every_steps=20)
# ':cpu' sizing: stage times of a first, larger run (6/2/5 epochs, 5 folds; 2 h 20 min quiet)
# scaled down. Measured for this variant on quiet 2-core CPUs (README): 1 h 55 min = PhilNet 40
# min (~99 images/s) + ResNet-50 7.5 + the VAE 3.3 + full fine-tuning 11.7 (6 runs of 6,667
# images) + head 1 + the alignment 51 (joint resampling of 12 targets 35.5: 9.6 s per bootstrap
# resample; the noise ceiling 6; within-fold statistics 5). Each added epoch or 100 resamples
# adds ~8 or ~16 minutes.
CPU_TRAINING = dict(log_every_steps=50)
CPU_COMPARISONS = ",".join([
    "philnet-seed0/penultimate:resnet50-seed0/penultimate",  # architecture, as trained
    "philnet_matched/penultimate:resnet50-seed0/penultimate",  # architecture, equal accuracy
    "philnet_cifar10h/probs:philnet_cifar10h_control/probs",  # soft vs hard labels, full
    "philnet_cifar10h_head/probs:philnet_cifar10h_head_control/probs",  # the same, head only
    "philnet_cifar10h_head/probs:philnet_cifar10h_temperature/probs",  # beyond calibration?
])


def get_config(arg: str | None = None):
  quick = arg == "quick"
  config = ml_collections.ConfigDict()
  config.data_dir = os.environ.get("ALIGN_JAX_DATA_DIR", "")  # used by every stage
  config.architectures = "philnet,resnet50,vae"  # which models the study trains
  config.num_seeds = 3  # training seeds per architecture (0..num_seeds-1)
  config.finetune_architecture = "philnet"  # fine-tuned on CIFAR-10H from seed 0 ('' = skip)
  config.finetune_modes = "full"  # 'full' and/or 'head' (finetune_cifar10h --help), same folds
  # ARCH=REFERENCE: also align ARCH's kept epoch-end checkpoint (seed 0) whose validation
  # accuracy is closest to REFERENCE's (label ARCH_matched), so that architecture is compared
  # at equal accuracy; it needs ARCH's keep_checkpoints >= its epochs ('' = skip)
  config.accuracy_matched = ""
  config.philnet = philnet.get_config()  # PhilNet's training config (train_philnet --help)
  config.resnet50 = resnet50.get_config()  # ResNet-50's training config (train_resnet --help)
  config.vae = vae.get_config()  # the VAE's training config (train_vae --help)
  # the CIFAR-10H fine-tuning config (finetune_cifar10h --help)
  config.finetune = finetune_cifar10h.get_config("quick" if quick else None)
  config.align = align.get_config("quick" if quick else None)  # the alignment (align --help)
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
    # every epoch-end checkpoint is kept: the accuracy-matched comparison picks one of them
    config.philnet.update(dict(CPU_TRAINING, num_epochs=5, warmup_epochs=0.5,
                               keep_checkpoints=5))
    config.resnet50.update(dict(CPU_TRAINING, num_epochs=1, batch_size=128,
                                warmup_epochs=0.3))
    config.resnet50.model_kwargs.stem = "imagenet"
    config.vae.update(dict(CPU_TRAINING, num_epochs=3))
    config.accuracy_matched = "philnet=resnet50"
    # both fine-tuning modes on the same 3 folds of all 10,000 test images; full: 1 epoch per
    # fold and target (~10 min), head: seconds; fine-tuned penultimate features kept per fold
    config.finetune_modes = "full,head"
    config.finetune.update(dict(num_folds=3, num_epochs=1, learning_rate=3e-4,
                                layers="penultimate"))
    # all 10,000 images; 12 targets at ~0.7 s each per joint resample on 2 cores (README,
    # "Joint resampling"): 200 resamples ~35 min, 50 permutations ~1 min; five pre-chosen
    # paired tests, so that Holm's smallest adjusted p (5 x 2 / 201) can reach 0.05
    config.align.update(dict(n_bootstrap=200, n_permutations=50, n_fold_bootstrap=100,
                             classifier_layers="penultimate,probs", comparisons=CPU_COMPARISONS))
  # ':quick' edits the nested configs above; this only rejects unknown variant names.
  return common.choose_variant(config, arg, {"quick": {}, "cpu": {}})
