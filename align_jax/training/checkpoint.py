"""Orbax checkpoints in `<workdir>/checkpoints`: the last N steps plus the best by a metric."""

import os

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as policies


class Checkpointer:
  """Saves host copies of a train state; every process calls it (orbax coordinates hosts)."""

  def __init__(self, workdir: str, keep: int, metric: str, mode: str):
    self.metric, self.mode = metric, mode
    policy = policies.AnyPreservationPolicy([
        policies.LatestN(n=keep),
        policies.BestN(get_metric_fn=lambda m: m[metric], reverse=mode == "min", n=1),
    ])
    self.manager = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"),
        # best_fn/best_mode make orbax store each step's metrics and answer best_step().
        options=ocp.CheckpointManagerOptions(
            preservation_policy=policy, best_fn=lambda m: m[metric], best_mode=mode,
            create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def best_step(self) -> int | None:
    """The kept step with the best selection metric (None when nothing is saved)."""
    return self.manager.best_step()

  def save(self, step: int, state, metrics: dict[str, float]) -> None:
    self.manager.save(step, args=ocp.args.StandardSave(jax.device_get(state)),
                      metrics={k: float(v) for k, v in metrics.items()})

  def restore(self, step: int, like):
    """Restores `step` into the structure (and dtypes) of the host state `like`."""
    return self.manager.restore(step, args=ocp.args.StandardRestore(jax.device_get(like)))

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
