"""`train_and_evaluate(config, workdir)`: the generic, resumable training loop for every task.

Writes into `workdir`: config.json (everything needed to rebuild the model), TensorBoard
events (train/*, eval/* on the validation split, test/* at the end), and orbax checkpoints
(the last `keep_checkpoints` plus the best by the task's validation metric). Running the same
command again resumes from the latest checkpoint.
"""

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions
from flax import jax_utils

from align_jax.data import input_pipeline, splits
from align_jax.errors import InputError
from align_jax.models import MODELS, create_model
from align_jax.training import checkpoint, pretrained, steps, tasks, train_state

CONFIG_FILE = "config.json"


def validate_config(config) -> None:
  """Raises InputError listing every bad field, with what is allowed."""
  problems = []

  def need(ok, message):
    if not ok:
      problems.append(message)

  need(config.model in MODELS, f"model={config.model!r} is not one of {sorted(MODELS)}")
  need(config.task in tasks.TASKS, f"task={config.task!r} is not one of {sorted(tasks.TASKS)}")
  need(config.num_epochs > 0, f"num_epochs={config.num_epochs} must be > 0")
  need(config.batch_size > 0, f"batch_size={config.batch_size} must be > 0")
  need(config.eval_batch_size > 0, f"eval_batch_size={config.eval_batch_size} must be > 0")
  need(config.learning_rate > 0, f"learning_rate={config.learning_rate} must be > 0")
  need(config.weight_decay >= 0, f"weight_decay={config.weight_decay} must be >= 0")
  need(0 <= config.final_lr_fraction <= 1,
       f"final_lr_fraction={config.final_lr_fraction} must be in [0, 1]")
  need(0 <= config.warmup_epochs < config.num_epochs,
       f"warmup_epochs={config.warmup_epochs} must be in [0, num_epochs={config.num_epochs})")
  need(config.train_subset >= 0, f"train_subset={config.train_subset} must be >= 0 (0 = all)")
  need(config.test_subset >= 0, f"test_subset={config.test_subset} must be >= 0 (0 = all)")
  need(config.num_folds == 0 or config.num_folds >= 2,
       f"num_folds={config.num_folds} must be 0 (CIFAR-10 training) or >= 2")
  need(0 <= config.fold < max(config.num_folds, 1),
       f"fold={config.fold} must be in 0..{max(config.num_folds - 1, 0)}")
  need(config.log_every_steps > 0, f"log_every_steps={config.log_every_steps} must be > 0")
  need(config.keep_checkpoints > 0, f"keep_checkpoints={config.keep_checkpoints} must be > 0")
  need(config.sample_every_steps >= 0,
       f"sample_every_steps={config.sample_every_steps} must be >= 0 (0 = after each epoch)")
  need(not config.data_dir or os.path.isdir(os.path.expanduser(config.data_dir)),
       f"data_dir={config.data_dir!r} is not a directory (set it, or ALIGN_JAX_DATA_DIR, to a "
       "data directory; empty means tensorflow-datasets)")
  if problems:
    raise InputError("Bad config:\n  - " + "\n  - ".join(problems))


def _prepare_workdir(config, workdir: str) -> None:
  """Writes config.json, refusing a workdir that holds a run of another model."""
  path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if (saved.get("model"), saved.get("model_kwargs")) != (config.model,
                                                          config.model_kwargs.to_dict()):
      raise InputError(f"{workdir} holds a run of model {saved.get('model')!r} with "
                       f"{saved.get('model_kwargs')}; use another --workdir for this model.")
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(tmp, path)


def _check_finite(values: dict[str, float], where: str, step: int, last_saved) -> None:
  bad = {k: v for k, v in values.items() if not math.isfinite(v)}
  if bad:
    raise FloatingPointError(
        f"{where} metrics became non-finite at step {step}: {bad}. Stopped without writing a "
        f"checkpoint (last good one: step {last_saved}). Lower learning_rate or set "
        "grad_clip_norm, then rerun to resume from that checkpoint.")


def evaluate(p_eval, rstate, examples: dict, batch_size: int, prep, rkey) -> dict[str, float]:
  """Task metrics over all of `examples` (padding masked out)."""
  total = None
  batches = input_pipeline.eval_batches(examples, batch_size, prep)
  for batch in input_pipeline.prefetch(batches):
    update = p_eval(rstate, batch, rkey).unreplicate()
    total = update if total is None else total.merge(update)
  return {k: float(v) for k, v in total.compute().items()}


def _after_evaluation(task, model, rstate, examples, step, writer, workdir) -> None:
  state = jax_utils.unreplicate(rstate)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  task.after_evaluation(model, variables, examples, step, writer, workdir)


def _write(writer, step: int, prefix: str, values: dict[str, float]) -> None:
  writer.write_scalars(step, {f"{prefix}/{k}": v for k, v in values.items()})


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config.model` on `config.task`; returns the final validation and test metrics."""
  validate_config(config)
  task = tasks.TASKS[config.task](**config.task_kwargs)
  model = create_model(config.model, bn_axis_name=steps.AXIS_NAME, **config.model_kwargs)
  _prepare_workdir(config, workdir)
  data = splits.load_training_splits(config)
  prep = input_pipeline.PREPROCESSING[task.preprocessing]
  input_pipeline.check_batch_size(config.eval_batch_size)
  input_pipeline.check_batch_size(config.batch_size)
  steps_per_epoch = len(data["train"]["image"]) // config.batch_size
  if steps_per_epoch == 0:
    raise InputError(f"batch_size={config.batch_size} exceeds the "
                     f"{len(data['train']['image'])} training images.")
  total_steps = config.num_epochs * steps_per_epoch

  init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
  example = jnp.zeros((1, 32, 32, 3), jnp.float32)
  variables = jax.jit(task.init_variables, static_argnums=0)(model, init_key, example)
  ckpt = checkpoint.Checkpointer(workdir, config.keep_checkpoints, task.selection_metric,
                                 task.selection_mode)
  last_saved = ckpt.latest_step()
  if config.init_from and last_saved is None:
    variables = pretrained.merge_variables(variables, pretrained.load_variables(config.init_from))
    logging.info("Initialised %s from %s.", config.model, config.init_from)
  state = train_state.create_train_state(
      variables, model.apply, train_state.create_optimizer(config, steps_per_epoch))
  schedule = train_state.learning_rate_schedule(config, steps_per_epoch)
  if last_saved is not None:
    state = ckpt.restore(last_saved, state)
    logging.info("Resuming from the checkpoint of step %d in %s.", last_saved, workdir)
  start_step = int(state.step)

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  report = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer)
  p_train, p_eval = steps.parallel_steps(task, model)
  rstate, rkey = jax_utils.replicate(state), jax_utils.replicate(dropout_key)
  batches = input_pipeline.prefetch(input_pipeline.train_batches(
      data["train"], config.batch_size, prep, config.seed, start_step))
  logging.info("Training %s on %d images (%d steps/epoch, %d epochs, %d devices), from step %d.",
               config.model, len(data["train"]["image"]), steps_per_epoch, config.num_epochs,
               jax.device_count(), start_step)

  validation, train_metrics, tick, tick_step = None, None, time.perf_counter(), start_step
  for step in range(start_step + 1, total_steps + 1):
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      rstate, update = p_train(rstate, next(batches), rkey)
    update = update.unreplicate()
    train_metrics = update if train_metrics is None else train_metrics.merge(update)
    report(step)
    epoch_end = step % steps_per_epoch == 0
    if step % config.log_every_steps == 0 or epoch_end:
      summary = {k: float(v) for k, v in train_metrics.compute().items()}
      _check_finite(summary, "Training", step, last_saved)
      now = time.perf_counter()
      summary["images_per_sec"] = (step - tick_step) * config.batch_size / (now - tick)
      summary["learning_rate"] = float(schedule(step - 1))
      tick, tick_step, train_metrics = now, step, None
      _write(writer, step, "train", summary)
      logging.info("step %d/%d: %s", step, total_steps,
                   ", ".join(f"{k} {v:.4g}" for k, v in summary.items()))
    if epoch_end:
      validation = evaluate(p_eval, rstate, data["validation"], config.eval_batch_size, prep,
                            rkey)
      _check_finite(validation, "Validation", step, last_saved)
      _write(writer, step, "eval", validation)
      ckpt.save(step, jax_utils.unreplicate(rstate), validation)
      last_saved = step
      logging.info("epoch %d/%d validation: %s", step // steps_per_epoch, config.num_epochs,
                   validation)
    if epoch_end or (config.sample_every_steps and step % config.sample_every_steps == 0):
      _after_evaluation(task, model, rstate, data["test"], step, writer, workdir)

  if validation is None:
    validation = evaluate(p_eval, rstate, data["validation"], config.eval_batch_size, prep, rkey)
    _after_evaluation(task, model, rstate, data["test"], total_steps, writer, workdir)
  test = evaluate(p_eval, rstate, data["test"], config.eval_batch_size, prep, rkey)
  _write(writer, total_steps, "test", test)
  logging.info("Final (step %d) test metrics: %s", total_steps, test)
  writer.flush()
  best_step = ckpt.best_step()
  ckpt.close()
  return {"step": total_steps, "validation": validation, "test": test, "best_step": best_step}
