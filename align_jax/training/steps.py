"""Pure train and eval steps, jitted over the global batch (runtime/parallel.py shards it).

The steps see the whole batch as one array: gradients, BatchNorm statistics and metrics are
those of the global batch, so N devices compute the update that one device computes on it.
"""

import functools

import jax

from align_jax.runtime import parallel


def step_key(root_key: jax.Array, step) -> jax.Array:
  """A fresh key per step, derived from one root key (the stream one device always drew)."""
  return jax.random.fold_in(jax.random.fold_in(root_key, step), 0)


def gradients(state, batch: dict, key: jax.Array, *, task, model):
  """(gradients of the task's training loss w.r.t. the parameters, the updated model state,
  the metric outputs) on `batch`."""
  def loss_fn(params):
    variables = {"params": params, "batch_stats": state.batch_stats}
    return task.loss(model, variables, batch, key, train=True, step=state.step)

  (_, (new_model_state, outputs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  return grads, new_model_state, outputs


def train_step(state, batch: dict, root_key: jax.Array, *, task, model):
  """One optimiser step on the global batch; returns (new state, metrics)."""
  grads, new_model_state, outputs = gradients(state, batch, step_key(root_key, state.step),
                                              task=task, model=model)
  state = state.apply_gradients(
      grads=grads, batch_stats=new_model_state.get("batch_stats", state.batch_stats))
  return state.update_average(), task.train_metrics.single_from_model_output(**outputs)


def train_step_on_device(state, source: dict, root_key: jax.Array, *, task, model, batches):
  """train_step on the batch that `batches` (a data.device_pipeline.DeviceBatches) draws for
  this step from `source` (an item of batches.sources: the training arrays on the devices)."""
  batch = batches.draw(source, state.step)
  return train_step(state, batch, root_key, task=task, model=model)


def eval_step(state, batch: dict, root_key: jax.Array, *, task, model):
  """Metrics of the model in inference mode on one (possibly padded, masked) batch."""
  key = step_key(root_key, state.step)
  _, (_, outputs) = task.loss(model, state.variables(), batch, key, train=False, step=state.step)
  return task.eval_metrics.single_from_model_output(**outputs)


@functools.lru_cache(maxsize=16)
def parallel_steps(task, model, batches=None):
  """(train_step, eval_step) for `task` and `model`, jitted with the state replicated and the
  batch split over every device (the train step donates its state). With `batches` (a
  DeviceBatches), the train step takes the device pipeline's replicated source instead of a
  batch. Cached per (task, model, batches) (hashable dataclasses), so runs in one process, e.g.
  the folds of a fine-tuning, compile each step once."""
  state, batch, key = parallel.replicated(), parallel.batch_split(), parallel.replicated()
  if batches is None:
    step, source = functools.partial(train_step, task=task, model=model), batch
  else:
    step = functools.partial(train_step_on_device, task=task, model=model, batches=batches)
    source = parallel.replicated()
  train = jax.jit(step, in_shardings=(state, source, key),
                  out_shardings=(state, parallel.replicated()), donate_argnums=(0,))
  evaluate = jax.jit(functools.partial(eval_step, task=task, model=model),
                     in_shardings=(state, batch, key), out_shardings=parallel.replicated())
  return train, evaluate
