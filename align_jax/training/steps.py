"""Pure train/eval steps and the ONE data-parallel wrapper (jax.pmap over local devices).

jax.pmap is in maintenance mode since JAX 0.8: `data_parallel` is the only place that names
it, so moving to jit + shard_map changes this file alone. Inside the steps, gradients and
BatchNorm statistics are averaged over `AXIS_NAME`, so N devices compute the update that one
device computes on the same global batch.
"""

import functools

import jax
from jax import lax

AXIS_NAME = "batch"


def data_parallel(step_fn, donate_state: bool = True):
  """Maps `step_fn(state, batch, ...)` over the local devices along AXIS_NAME."""
  return jax.pmap(step_fn, axis_name=AXIS_NAME, donate_argnums=(0,) if donate_state else ())


def step_key(root_key: jax.Array, step) -> jax.Array:
  """A fresh key per step and per device, derived from one root key."""
  return jax.random.fold_in(jax.random.fold_in(root_key, step), lax.axis_index(AXIS_NAME))


def train_step(state, batch: dict, root_key: jax.Array, *, task, model):
  """One optimiser step on the global batch; returns (new state, gathered metrics)."""
  key = step_key(root_key, state.step)

  def loss_fn(params):
    variables = {"params": params, "batch_stats": state.batch_stats}
    return task.loss(model, variables, batch, key, train=True, step=state.step)

  (_, (new_model_state, outputs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  grads = lax.pmean(grads, AXIS_NAME)
  state = state.apply_gradients(
      grads=grads, batch_stats=new_model_state.get("batch_stats", state.batch_stats))
  return state, task.train_metrics.gather_from_model_output(axis_name=AXIS_NAME, **outputs)


def eval_step(state, batch: dict, root_key: jax.Array, *, task, model):
  """Metrics of the model in inference mode on one (possibly padded) batch."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  key = step_key(root_key, state.step)
  _, (_, outputs) = task.loss(model, variables, batch, key, train=False, step=state.step)
  return task.eval_metrics.gather_from_model_output(axis_name=AXIS_NAME, **outputs)


@functools.lru_cache(maxsize=16)
def parallel_steps(task, model):
  """(p_train_step, p_eval_step) for `task` and `model`, both data-parallel. Cached per (task,
  model) (both hashable dataclasses), so runs in one process, e.g. the folds of a fine-tuning,
  compile each step once."""
  p_train = data_parallel(functools.partial(train_step, task=task, model=model))
  p_eval = data_parallel(functools.partial(eval_step, task=task, model=model),
                         donate_state=False)
  return p_train, p_eval
