"""PhilNet on CIFAR-10.

Full recipe (GPU-scale: 50 epochs, global batch 128, AdamW lr 1e-3 with 1 warm-up epoch and
cosine decay, weight decay 5e-4 on kernels only, standard crop+flip augmentation):
  python -m experiments.train_philnet --workdir=W --config=experiments/configs/philnet.py
Smoke test (about a minute on 2 CPU cores; accuracy near chance is expected):
  python -m experiments.train_philnet --workdir=W --config=experiments/configs/philnet.py:smoke
"""

from experiments.configs import common

HELP = common.TRAINING_HELP


def get_config(arg: str | None = None):
  config = common.training_config()
  config.model = "philnet"
  config.model_kwargs.num_classes = 10
  config.model_kwargs.dropout_rate = 0.4
  return common.apply_variant(config, arg)
