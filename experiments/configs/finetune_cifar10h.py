"""Fine-tuning a CIFAR-10 classifier on CIFAR-10H soft labels, k-fold over the test images
(Peterson et al., ICCV 2019), with the CIFAR-10 hard labels of the same images as the control.

Full protocol (10 folds of the 10,000 test images, 10 epochs per fold, AdamW lr 1e-4):
  python -m experiments.finetune_cifar10h --workdir=F --config.init_from=W_PHILNET
Quick (1,000 images, 5 folds, 2 epochs; a few minutes on 2 CPU cores): append ':quick'.
Head only (the network frozen, its classifier head refitted per fold; about 2.5 minutes on 2 CPU
cores for all 10,000 images in 10 folds): --config.mode=head.
The model kind comes from init_from's config.json; its best checkpoint is the start.
"""

from experiments.configs import common

PER_FOLD = ("model", "model_kwargs", "task", "task_kwargs", "fold")  # set per fold
FIELDS = [
    ("init_from", "", "the CIFAR-10 training workdir to start from (required)"),
    ("num_folds", 10, "folds of the test images; each fold's network trains on the others"),
    ("targets", "cifar10h,cifar10", "soft human labels; hard CIFAR-10 labels (the control)"),
    ("mode", "full", "'full': the whole network fine-tuned per fold; 'head': the network "
     "frozen, only its classifier head refitted per fold (full-batch AdamW from the trained "
     "head)"),
    ("head_steps", 500, "mode='head': full-batch AdamW steps per fold"),
    ("head_learning_rate", 1e-3, "mode='head': AdamW learning rate (weight_decay applies)"),
    ("temperature_baseline", True, "also score the starting network with one temperature per "
     "fold, fitted on the training folds' human distributions (target 'temperature': the "
     "calibration baseline)"),
    ("layers", "penultimate,logits", "features kept per fold for within-fold RSA"),
]
HELP = {**{k: v for k, v in common.TRAINING_HELP.items() if k not in PER_FOLD},
        **common.meanings(FIELDS)}


def get_config(arg: str | None = None):
  config = common.training_config()
  for field in PER_FOLD:
    del config[field]
  for name, default, _ in FIELDS:
    config[name] = default
  config.num_epochs = 10
  config.learning_rate = 1e-4
  config.warmup_epochs = 0.0
  config.keep_checkpoints = 1
  config.log_every_steps = 20
  return common.choose_variant(config, arg, {"quick": dict(
      test_subset=1000, num_folds=5, num_epochs=2, batch_size=64, eval_batch_size=200,
      log_every_steps=10)})
