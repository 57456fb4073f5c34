"""`train_and_evaluate(config, workdir)`: the generic, resumable training loop for every task.

Writes into `workdir`: config.json (everything needed to rebuild the model), run.json (the
data's identity, allowed config changes), TensorBoard events (train/*, eval/* on the validation
split, test/* at the end), and orbax checkpoints (evaluated ones, at epoch ends or
`evaluations_per_epoch` times an epoch in the first `evaluation_epochs`: the last
`keep_checkpoints` plus the best by the task's validation metric; every `checkpoint_every_steps` steps: the newest one,
for resumption). Running the same command again resumes from the newest checkpoint that
restores cleanly, and only under the same config (training/resume.py). The workdir is locked
while the run lasts, and nothing is written before the config and the data are validated.
"""

import math
import time

import jax
import jax.numpy as jnp
from absl import logging

from align_jax.data import device_pipeline, input_pipeline, splits
from align_jax.errors import InputError
from align_jax.models import create_model
from align_jax.runtime import config_checks, multihost, parallel, progress, summaries
from align_jax.runtime import workdir as workdir_lib
from align_jax.training import (checkpoint, pretrained, resume, steps, tasks,
                                train_state, whitening)


def _check_finite(values: dict[str, float], where: str, step: int, last_saved) -> None:
  bad = {k: v for k, v in values.items() if not math.isfinite(v)}
  if bad:
    raise FloatingPointError(
        f"{where} metrics became non-finite at step {step}: {bad}. Stopped without writing a "
        f"checkpoint ({checkpoint.last_good(last_saved)}). Lower learning_rate or set "
        "grad_clip_norm, then rerun.")


def evaluate(eval_step, state, examples: dict, batch_size: int, prep, key,
             what: str = "Evaluation") -> dict[str, float]:
  """Task metrics over all of `examples` (padding masked out); progress lines when it is long
  (a test-time-augmented test set)."""
  total = None
  global_batch = parallel.padded_size(batch_size)
  tracker = progress.Progress(what, -(-len(examples["image"]) // global_batch))
  batches = input_pipeline.eval_batches(examples, batch_size, prep)
  for done, batch in enumerate(input_pipeline.on_devices(batches, global_batch), start=1):
    update = parallel.local_copy(eval_step(state, batch, key))
    total = update if total is None else total.merge(update)
    tracker.update(done)
  return {k: float(v) for k, v in total.compute().items()}


def _after_evaluation(task, model, state, examples, step, writer, workdir) -> None:
  variables = parallel.to_host(state.variables())
  task.after_evaluation(model, variables, examples, step, writer, workdir)


def _write(writer, step: int, prefix: str, values: dict[str, float]) -> None:
  writer.write_scalars(step, {f"{prefix}/{k}": v for k, v in values.items()})


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _metrics_text(values: dict[str, float]) -> str:
  return ", ".join(f"{k} {v:.4g}" for k, v in values.items())


def evaluation_offsets(steps_per_epoch: int, per_epoch: int) -> frozenset[int]:
  """Steps within an epoch (modulo steps_per_epoch; 0 = the epoch end) after which the loop
  validates and keeps a checkpoint: `per_epoch` of them, as evenly spaced as whole steps allow."""
  if per_epoch > steps_per_epoch:
    raise InputError(f"evaluations_per_epoch={per_epoch} exceeds the {steps_per_epoch} steps "
                     "of an epoch; lower it or the batch size.")
  return frozenset(round(j * steps_per_epoch / per_epoch) % steps_per_epoch
                   for j in range(1, per_epoch + 1))


def evaluation_steps(steps_per_epoch: int, num_epochs: int, per_epoch: int,
                     dense_epochs: int) -> frozenset[int]:
  """The steps after which the loop validates and keeps a checkpoint: `per_epoch` evenly spaced
  ones in each of the first `dense_epochs` epochs (0 = every epoch), the epoch end in the rest."""
  offsets = evaluation_offsets(steps_per_epoch, per_epoch)
  dense = config_checks.dense_evaluation_epochs(num_epochs, dense_epochs)
  return frozenset(
      [e * steps_per_epoch + o + (o == 0) * steps_per_epoch for e in range(dense) for o in offsets]
      + [e * steps_per_epoch for e in range(dense + 1, num_epochs + 1)])


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config.model` on `config.task`; returns the final validation and test metrics."""
  config_checks.training(config)
  parallel.check_batch_size(config.batch_size)  # before anything is built
  task = tasks.TASKS[config.task](**config.task_kwargs)
  model = create_model(config.model, dtype=jnp.dtype(config.dtype),
                       layer_impl=config.layer_impl, **config.model_kwargs)
  data = splits.load_training_splits(config)  # validated before anything is written
  with workdir_lib.lock(workdir):
    return _train(config, workdir, task, model, data)


def _train(config, workdir: str, task, model, data: dict) -> dict:
  prep = input_pipeline.PREPROCESSING[task.preprocessing]
  steps_per_epoch = len(data["train"]["image"]) // config.batch_size
  if steps_per_epoch == 0:
    raise InputError(f"batch_size={config.batch_size} exceeds the "
                     f"{len(data['train']['image'])} training images.")
  total_steps = config.num_epochs * steps_per_epoch
  evaluated_steps = evaluation_steps(steps_per_epoch, config.num_epochs,
                                     config.evaluations_per_epoch, config.evaluation_epochs)
  multihost.agree(lambda: resume.check_and_record(  # process 0; refuses before any write
      config, workdir, data["identity"], checkpoint.has_checkpoints(workdir)))

  init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
  example = jnp.zeros((1, 32, 32, 3), jnp.float32)
  variables = jax.jit(task.init_variables, static_argnums=0)(model, init_key, example)
  ckpt = checkpoint.Checkpointer(workdir, config.keep_checkpoints, task.selection_metric,
                                 task.selection_mode)
  new_state = lambda variables: train_state.create_train_state(
      variables, model.apply, train_state.create_optimizer(config, steps_per_epoch),
      config.ema_decay)
  restored, last_saved = ckpt.restore_newest(new_state(variables))
  if restored is not None:
    state = restored
    logging.info("Resuming from the checkpoint of step %d in %s.", last_saved, workdir)
  else:
    if config.init_from:
      variables = pretrained.merge_variables(variables,
                                             pretrained.load_variables(config.init_from))
      logging.info("Initialised %s from %s.", config.model, config.init_from)
    elif config.whitening_init:
      sample = data["train"]["image"][:whitening.WHITENING_IMAGES]
      variables = whitening.initialise(variables, input_pipeline.preprocess(sample, prep, None))
      logging.info("First convolution initialised to whiten the patches of %d training images.",
                   len(sample))
    state = new_state(variables)
  schedule = train_state.learning_rate_schedule(config, steps_per_epoch)
  start_step = int(state.step)

  writer = summaries.TensorBoardWriter(workdir)
  state, key = parallel.put_replicated(state), parallel.put_replicated(dropout_key)
  pipeline, why = device_pipeline.choose(config.input_pipeline, data["train"])
  logging.info("Input pipeline: %s (%s).", pipeline, why)
  if pipeline == "device":
    device_batches = device_pipeline.DeviceBatches(config.batch_size, steps_per_epoch, prep,
                                                   config.alternating_flips)
    train_step, eval_step = steps.parallel_steps(task.between_epochs(), model, device_batches)
    batches = device_batches.sources(dict(data["train"]), device_pipeline.data_key(config.seed),
                                     start_step)
  else:
    train_step, eval_step = steps.parallel_steps(task.between_epochs(), model)
    batches = input_pipeline.on_devices(input_pipeline.train_batches(
        data["train"], config.batch_size, prep, config.seed, start_step), config.batch_size)
  logging.info("Training %s on %d images (%d steps/epoch, %d epochs, %d devices), from step %d.",
               config.model, len(data["train"]["image"]), steps_per_epoch, config.num_epochs,
               jax.device_count(), start_step)

  validation, train_metrics = None, None
  tick, tick_step, started = time.perf_counter(), start_step, time.perf_counter()
  for step in range(start_step + 1, total_steps + 1):
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      state, update = train_step(state, next(batches), key)
    update = parallel.local_copy(update)
    train_metrics = update if train_metrics is None else train_metrics.merge(update)
    epoch_end = step % steps_per_epoch == 0
    evaluated = step in evaluated_steps
    if step % config.log_every_steps == 0 or evaluated:
      summary = {k: float(v) for k, v in train_metrics.compute().items()}
      _check_finite(summary, "Training", step, last_saved)
      now = time.perf_counter()
      images_per_sec = (step - tick_step) * config.batch_size / (now - tick)
      _write(writer, step, "train", dict(summary, images_per_sec=images_per_sec,
                                         learning_rate=float(schedule(step - 1))))
      eta = (now - started) / (step - start_step) * (total_steps - step)
      logging.info("step %d/%d: %s, %.0f images/s, ETA %s", step, total_steps,
                   _metrics_text(summary), images_per_sec, _duration(eta))
      tick, tick_step, train_metrics = now, step, None
    if evaluated:
      validation = evaluate(eval_step, state, data["validation"], config.eval_batch_size, prep,
                            key)
      _check_finite(validation, "Validation", step, last_saved)
      _write(writer, step, "eval", validation)
      ckpt.save(step, parallel.to_host(state), validation)
      last_saved = step
      logging.info("epoch %.4g/%d validation: %s", step / steps_per_epoch, config.num_epochs,
                   _metrics_text(validation))
    elif config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0:
      ckpt.save(step, parallel.to_host(state), None)
      last_saved = step
    if epoch_end or (config.sample_every_steps and step % config.sample_every_steps == 0):
      _after_evaluation(task, model, state, data["test"], step, writer, workdir)

  if validation is None:
    validation = evaluate(eval_step, state, data["validation"], config.eval_batch_size, prep, key)
    _after_evaluation(task, model, state, data["test"], total_steps, writer, workdir)
  final_eval_step = steps.parallel_steps(task, model)[1]
  test = evaluate(final_eval_step, state, data["test"], config.eval_batch_size, prep, key,
                  "Test evaluation")
  _write(writer, total_steps, "test", test)
  logging.info("final (step %d) test metrics: %s", total_steps, _metrics_text(test))
  writer.flush()
  best_step = ckpt.best_step()
  ckpt.close()
  return {"step": total_steps, "validation": validation, "test": test, "best_step": best_step}
