"""Checkpoints evaluated several times per epoch, and the accuracy-matched choice among them."""

import numpy as np
import pytest

from align_jax import features
from align_jax.errors import InputError
from align_jax.pipeline import study
from align_jax.runtime import config_checks
from align_jax.training import loop
from experiments.configs import philnet


@pytest.mark.parametrize("steps_per_epoch,per_epoch", [(175, 4), (175, 1), (8, 8), (10, 3)])
def test_evaluation_offsets_are_evenly_spaced_and_end_the_epoch(steps_per_epoch, per_epoch):
  offsets = loop.evaluation_offsets(steps_per_epoch, per_epoch)
  steps = sorted(o or steps_per_epoch for o in offsets)  # within the epoch, 1..steps_per_epoch
  assert len(steps) == per_epoch and steps[-1] == steps_per_epoch
  ideal = np.arange(1, per_epoch + 1) * steps_per_epoch / per_epoch
  assert np.max(np.abs(np.array(steps) - ideal)) <= 0.5


@pytest.mark.parametrize("num_epochs,per_epoch,dense_epochs", [
    (6, 16, 2), (3, 4, 0), (3, 4, 3), (3, 4, 7), (5, 1, 2), (1, 5, 1)])
def test_dense_evaluations_cover_the_first_epochs_then_epoch_ends(num_epochs, per_epoch,
                                                                 dense_epochs):
  steps_per_epoch = 37
  offsets = loop.evaluation_offsets(steps_per_epoch, per_epoch)
  dense = dense_epochs or num_epochs
  expected = [s for s in range(1, num_epochs * steps_per_epoch + 1)
              if s % steps_per_epoch == 0
              or ((s - 1) // steps_per_epoch < dense and s % steps_per_epoch in offsets)]
  steps = loop.evaluation_steps(steps_per_epoch, num_epochs, per_epoch, dense_epochs)
  assert sorted(steps) == expected
  config = philnet.get_config()
  config.num_epochs, config.evaluations_per_epoch = num_epochs, per_epoch
  config.evaluation_epochs = dense_epochs
  assert config_checks.evaluated_checkpoints(config) == len(expected)


def test_more_evaluations_than_steps_is_refused():
  with pytest.raises(InputError, match="evaluations_per_epoch=9 exceeds the 8 steps"):
    loop.evaluation_offsets(8, 9)


def test_quarter_epoch_checkpoints_are_kept_and_matching_picks_the_closest(
    fake_data_dir, tmp_path, monkeypatch):
  config = philnet.get_config("smoke")
  config.data_dir = fake_data_dir
  config.num_validation, config.train_subset, config.test_subset = 60, 240, 60
  config.batch_size, config.eval_batch_size, config.num_epochs = 30, 60, 3
  config.evaluations_per_epoch, config.evaluation_epochs, config.keep_checkpoints = 4, 2, 9
  workdir = str(tmp_path / "w")
  loop.train_and_evaluate(config, workdir)
  kept = features.epoch_metrics(workdir)
  # 8 steps an epoch: every 2 steps in the first two epochs, then the epoch end
  assert sorted(kept) == [2, 4, 6, 8, 10, 12, 14, 16, 24]
  accuracies = {step: m["accuracy"] for step, m in kept.items()}
  real = features.epoch_metrics
  for target in (0.0, 1.0, float(np.median(list(accuracies.values()))) + 1e-4):
    monkeypatch.setattr(study.features, "epoch_metrics", lambda w, target=target: (
        {7: {"accuracy": target}} if w == "R" else real(w)))
    monkeypatch.setattr(study.features, "checkpoint_step", lambda w, which: 7)
    chosen = study.matched_checkpoint(workdir, "R", "best")
    distance = {s: abs(a - target) for s, a in accuracies.items()}
    closest = min(s for s in distance if distance[s] == min(distance.values()))  # ties: earlier
    assert chosen == {"step": closest, "accuracy": accuracies[closest],
                      "reference_accuracy": target}


def test_the_field_is_checked_before_anything_runs(tmp_path):
  config = philnet.get_config("smoke")
  config.evaluations_per_epoch = 0
  with pytest.raises(InputError, match="evaluations_per_epoch=0 must be >= 1"):
    loop.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_the_study_refuses_to_match_among_checkpoints_it_would_not_keep(tmp_path):
  from experiments.configs import study as study_configs  # pylint: disable=g-import-not-at-top
  config = study_configs.get_config("cpu")
  config.data_dir = str(tmp_path)
  config_checks.study(config)  # as shipped, every evaluated checkpoint is kept
  config.philnet.evaluations_per_epoch = 16  # 2 x 16 in the dense epochs + 4 epoch ends
  with pytest.raises(InputError, match=r"philnet keeps 28 of its 36 evaluated checkpoints.*"
                                       r"philnet.keep_checkpoints=36"):
    config_checks.study(config)
  config.philnet.keep_checkpoints = 36
  config_checks.study(config)
