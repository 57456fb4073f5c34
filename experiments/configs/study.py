"""The main job: train PhilNet, ResNet-50 and the VAE (num_seeds each), fine-tune PhilNet on
CIFAR-10H (k-fold, hard-label control), then the alignment run and OUT/report.md.

Full study (paper scale, for a GPU: the full recipes, 3 seeds, 10 folds, 1,000 resamples):
  python -m experiments.run_study --workdir=OUT --config=experiments/configs/study.py
Quick (everything on reduced data; under 30 minutes on 2 CPU cores, accuracies far below the
full recipes): append ':quick'. Sub-configs take overrides too, e.g.
--config.philnet.num_epochs=5 or --config.align.n_bootstrap=200.
"""

import os

import ml_collections

from experiments.configs import align, common, finetune_cifar10h, philnet, resnet50, vae

QUICK_TRAINING = dict(num_validation=1000, test_subset=1000, eval_batch_size=500,
                      log_every_steps=20)


def get_config(arg: str | None = None):
  quick = arg == "quick"
  config = ml_collections.ConfigDict()
  config.data_dir = os.environ.get("ALIGN_JAX_DATA_DIR", "")  # used by every stage
  config.architectures = "philnet,resnet50,vae"  # which models the study trains
  config.num_seeds = 3  # training seeds per architecture (0..num_seeds-1)
  config.finetune_architecture = "philnet"  # fine-tuned on CIFAR-10H from seed 0 ('' = skip)
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
  # ':quick' edits the nested configs above; this only rejects unknown variant names.
  return common.choose_variant(config, arg, {"quick": {}})
