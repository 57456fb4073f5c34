"""PhilNet on CIFAR-10.

Full recipe (GPU-scale: 50 epochs, global batch 128, AdamW lr 1e-3 with 1 warm-up epoch and
cosine decay, weight decay 5e-4 on kernels only, standard crop+flip augmentation):
  python -m experiments.train_philnet --workdir=W --config=experiments/configs/philnet.py
Fast recipe (the same network, an hour on 2 CPU cores; docs/training.md "The fast recipe"):
  python -m experiments.train_philnet --workdir=W --config=experiments/configs/philnet.py:fast
Smoke tests (seconds to a minute on 2 CPU cores; accuracy near chance is expected): ':smoke',
and ':fast_smoke' (the fast recipe's every technique on a few steps).
"""

from experiments.configs import common

HELP = common.TRAINING_HELP

# The fast recipe: each field below can be switched back on the command line.
FAST = dict(
    num_epochs=10, batch_size=256, eval_batch_size=250,
    optimizer="sgd", momentum=0.9, learning_rate=0.2, weight_decay=5e-4,
    lr_schedule="linear", warmup_epochs=2.0, final_lr_fraction=0.0,
    input_pipeline="device", alternating_flips=True, whitening_init=True, ema_decay=0.98,
    checkpoint_every_steps=0, log_every_steps=25)
FAST_TASK = dict(label_smoothing=0.2, test_time_augmentation="flip_shift")


def get_config(arg: str | None = None):
  config = common.training_config()
  config.model = "philnet"
  config.model_kwargs.num_classes = 10
  config.model_kwargs.dropout_rate = 0.4
  if arg in ("fast", "fast_smoke"):
    config.update(FAST)
    config.model_kwargs.dropout_rate = 0.0
    config.task_kwargs.update(FAST_TASK)
  variants = {"smoke": common.SMOKE, "fast": {},
              "fast_smoke": dict(common.SMOKE, batch_size=64, warmup_epochs=0.5, learning_rate=0.05)}
  return common.choose_variant(config, arg, variants)
