"""Training and inference speed: align_jax's train step against PyTorch's, side by side.

For each model, every contender runs in this one process, in turns (the order rotates each
repeat), on the same synthetic batch shape (global batch --batch_size, 32x32x3, float32):
  align_jax[POLICY]  the engine's data-parallel train step (training/steps.py: task loss,
                     AdamW with the cosine schedule, BatchNorm statistics, metrics; jitted over
                     the global batch, runtime/parallel.py) with config.layer_impl=POLICY
                     (models/layers.py), optionally ':bfloat16', or '+pmap': the engine's former
                     step (jax.pmap over the local devices, gradients and BatchNorm statistics
                     averaged with lax.pmean), kept here as the reference for the jitted one;
  pytorch            the same architecture (benchmarks/torch_models.py), AdamW, float32, NCHW:
                     zero_grad, forward, loss, backward, step.
Inference is the model in evaluation mode on the same batch (jitted apply; torch.no_grad).
The process keeps freed host memory for reuse (align_jax/runtime/host_memory.py, as the entry points
do; it applies to PyTorch alike) unless --release_freed_memory.
Reported: images/s from the median step time over --repeats (each --steps steps), ratios
against PyTorch, and align_jax's first call (compilation included) separately.

  python benchmarks/train_bench.py              # docs/performance.md's table (~25 min)
  python benchmarks/train_bench.py --models=philnet --repeats=3
  python benchmarks/train_bench.py --variants=auto,auto:bfloat16 --no_torch   # GPU check
  python benchmarks/train_bench.py --models=philnet --variants=auto,auto+pmap --no_torch \
      --no_inference                          # the jitted step against the former pmap one

PyTorch comes with `pip install -e ".[bench]"`; without it the script says so and times
align_jax alone.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

MODELS = {  # name: (align_jax model, its keyword arguments, task, steps per timed repeat)
    "philnet": ("philnet", {}, "classification", 3),
    "resnet50_imagenet": ("resnet50", {"stem": "imagenet"}, "classification", 3),
    "resnet50_cifar": ("resnet50", {"stem": "cifar"}, "classification", 1),
    "vae": ("vae", {}, "vae", 5),
}


def _parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split("\n\n", 1)[1])
  parser.add_argument("--models", default=",".join(MODELS),
                      help=f"comma-separated, of {', '.join(MODELS)} (default: all)")
  parser.add_argument("--variants", default="xla,auto",
                      help="align_jax contenders, POLICY[:DTYPE] with POLICY in auto, rewritten, "
                           "xla and DTYPE float32 (default) or bfloat16 (default: xla,auto)")
  parser.add_argument("--batch_size", type=int, default=128, help="global batch (default 128)")
  parser.add_argument("--repeats", type=int, default=5,
                      help="timed turns per contender; medians are reported (default 5)")
  parser.add_argument("--steps", type=int, default=0,
                      help="steps per timed turn (default 0: per model, 1-5)")
  parser.add_argument("--no_torch", action="store_true", help="time align_jax alone")
  parser.add_argument("--no_inference", action="store_true", help="time train steps only")
  parser.add_argument("--release_freed_memory", action="store_true",
                      help="leave glibc's malloc as it is (freed memory goes back to the OS); "
                           "by default host_memory.retain_freed_memory() is called first, as the "
                           "entry points do, for every contender alike")
  args = parser.parse_args(argv)
  unknown = set(args.models.split(",")) - set(MODELS)
  if unknown:
    parser.error(f"unknown models {sorted(unknown)}; choose from {list(MODELS)}")
  for variant in args.variants.split(","):
    if not is_variant(variant):
      parser.error(f"bad variant {variant!r}: {VARIANT_FORM}")
  if args.batch_size < 1 or args.repeats < 1 or args.steps < 0:
    parser.error("batch_size and repeats must be >= 1, steps >= 0")
  return args


VARIANT_FORM = ("use POLICY[:DTYPE][+pmap], POLICY in auto, rewritten, xla; DTYPE float32 or "
                "bfloat16")


def is_variant(variant: str) -> bool:
  """Whether `variant` names an align_jax contender: POLICY[:DTYPE][+pmap] (VARIANT_FORM)."""
  variant = variant.removesuffix("+pmap")
  policy, _, dtype = variant.partition(":")
  return policy in ("auto", "rewritten", "xla") and dtype in ("", "float32", "bfloat16")


def pmap_reference_step(task, model):
  """The engine's former data-parallel train step: jax.pmap over the local devices, each with
  its own dropout key, gradients and BatchNorm statistics (the model's bn_axis_name) averaged
  with lax.pmean. The reference the jitted step is measured against."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax import lax  # pylint: disable=g-import-not-at-top
  from align_jax.training import steps  # pylint: disable=g-import-not-at-top

  def step(state, batch, root_key):
    key = jax.random.fold_in(jax.random.fold_in(root_key, state.step), lax.axis_index("batch"))
    grads, new_model_state, outputs = steps.gradients(state, batch, key, task=task, model=model)
    state = state.apply_gradients(
        grads=lax.pmean(grads, "batch"),
        batch_stats=new_model_state.get("batch_stats", state.batch_stats))
    return state, task.train_metrics.gather_from_model_output(axis_name="batch", **outputs)

  return jax.pmap(step, axis_name="batch", donate_argnums=(0,))


class _Contender:
  """A named pair of callables that each run `steps` train steps / one inference batch, and
  block until the work is done; align_jax's also give their compiled train step's HLO text, the
  model's variables, `train_from(next_batch, steps, step=None)` (steps on other batches, or of
  another train step), `device_step(batches)` (the train step fed by the device pipeline's
  DeviceBatches) and the task's preprocessing name (data/input_pipeline.py)."""

  def __init__(self, name, train, infer, train_hlo=None, variables=None, train_from=None,
               preprocessing=None, device_step=None):
    self.name, self.train, self.infer = name, train, infer
    self.train_hlo, self.variables = train_hlo, variables
    self.train_from, self.preprocessing = train_from, preprocessing
    self.device_step = device_step
    self.first_call = None


def align_jax_contender(name: str, kind: str, model_kwargs: dict, task_name: str, variant: str,
                        batch_size: int) -> _Contender:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from flax import jax_utils  # pylint: disable=g-import-not-at-top

  from align_jax.models import create_model  # pylint: disable=g-import-not-at-top
  from align_jax.runtime import parallel  # pylint: disable=g-import-not-at-top
  from align_jax.training import steps, tasks, train_state  # pylint: disable=g-import-not-at-top
  from experiments.configs import common  # pylint: disable=g-import-not-at-top

  pmap = variant.endswith("+pmap")
  policy, _, dtype = variant.removesuffix("+pmap").partition(":")
  config = common.training_config()
  config.num_epochs = 10
  task = tasks.TASKS[task_name]()
  model = create_model(kind, bn_axis_name="batch" if pmap else None,
                       dtype=jnp.dtype(dtype or "float32"), layer_impl=policy, **model_kwargs)
  inference_model = create_model(kind, dtype=jnp.dtype(dtype or "float32"), layer_impl=policy,
                                 **model_kwargs)
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(batch_size, 32, 32, 3)).astype(np.float32)
  labels = rng.integers(0, 10, batch_size).astype(np.int32)
  variables = jax.jit(task.init_variables, static_argnums=0)(
      model, jax.random.key(0), jnp.asarray(images[:1]))
  state = train_state.create_train_state(
      variables, model.apply, train_state.create_optimizer(config, steps_per_epoch=100))
  batch = {"image": images, "label": labels}  # host arrays, as the input pipeline's rows
  if pmap:
    n_dev = jax.local_device_count()
    batch = {k: v.reshape(n_dev, -1, *v.shape[1:]) for k, v in batch.items()}
    train_step = pmap_reference_step(task, model)
    holder = {"state": jax_utils.replicate(state), "key": jax_utils.replicate(jax.random.key(1))}
    fetch = lambda update: update.unreplicate()
  else:
    train_step, _ = steps.parallel_steps(task, model)
    holder = {"state": parallel.put_replicated(state),
              "key": parallel.put_replicated(jax.random.key(1))}
    fetch = parallel.local_copy

  def train_from(next_batch, n_steps, step=None):
    """n_steps steps (of `step`, default this contender's) on next_batch()'s batches, merging
    their metrics as the loop does."""
    metrics = None
    for _ in range(n_steps):
      holder["state"], update = (step or train_step)(holder["state"], next_batch(),
                                                     holder["key"])
      update = fetch(update)
      metrics = update if metrics is None else metrics.merge(update)
    jax.block_until_ready((holder["state"].params, metrics.compute()))

  def train(n_steps):
    train_from(lambda: batch, n_steps)

  eval_variables = dict(variables)
  apply = jax.jit(lambda v, x: inference_model.apply(v, x, train=False)[0])
  device_images = jnp.asarray(images)

  def infer():
    jax.block_until_ready(apply(eval_variables, device_images))

  def train_hlo():
    return train_step.lower(holder["state"], batch, holder["key"]).compile().as_text()

  device_step = None if pmap else (lambda batches: steps.parallel_steps(task, model, batches)[0])
  return _Contender(name, train, infer, train_hlo, variables, train_from, task.preprocessing,
                    device_step)


def _pytorch(name: str, batch_size: int) -> _Contender:
  import torch  # pylint: disable=g-import-not-at-top

  import torch_models  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  torch.set_num_threads(os.cpu_count())
  if name == "philnet":
    model = torch_models.PhilNet()
  elif name.startswith("resnet50"):
    model = torch_models.ResNet50(stem=name.split("_")[1])
  else:
    model = torch_models.VAE()
  rng = np.random.default_rng(0)
  images = torch.from_numpy(rng.uniform(size=(batch_size, 3, 32, 32)).astype(np.float32))
  labels = torch.from_numpy(rng.integers(0, 10, batch_size))
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)

  def loss_of(output):
    if name == "vae":
      return torch_models.vae_loss(output, images)
    return torch.nn.functional.cross_entropy(output, labels)

  def train(n_steps):
    model.train()
    for _ in range(n_steps):
      optimizer.zero_grad(set_to_none=True)
      loss_of(model(images)).backward()
      optimizer.step()

  def infer():
    model.eval()
    with torch.no_grad():
      model(images)

  return _Contender("pytorch", train, infer)


def _timed(fn, *args) -> float:
  start = time.perf_counter()
  fn(*args)
  return time.perf_counter() - start


def _measure(contenders, n_steps: int, repeats: int, inference: bool) -> dict:
  """{contender: {'train': s/step, 'infer': s/batch}} (medians), alternating contenders."""
  for c in contenders:  # first calls: compilation (align_jax), allocator warm-up (both)
    c.first_call = _timed(c.train, 1)
    if inference:
      c.infer()
  times = {c.name: {"train": [], "infer": []} for c in contenders}
  for r in range(repeats):
    for c in contenders[r % len(contenders):] + contenders[:r % len(contenders)]:
      times[c.name]["train"].append(_timed(c.train, n_steps) / n_steps)
      if inference:
        times[c.name]["infer"].append(_timed(c.infer))
  return {name: {k: statistics.median(v) if v else float("nan") for k, v in t.items()}
          for name, t in times.items()}


def main(argv=None) -> None:
  args = _parse_args(argv)
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from align_jax.runtime import host_memory  # pylint: disable=g-import-not-at-top
  retained = not args.release_freed_memory and host_memory.retain_freed_memory()
  torch_note = ""
  if not args.no_torch:
    try:
      import torch  # pylint: disable=g-import-not-at-top
      torch_note = f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
      print("PyTorch is not installed (pip install -e \".[bench]\"); timing align_jax alone.")
      args.no_torch = True
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.local_devices()
  print(f"align_jax on {len(devices)} x {devices[0].device_kind} ({jax.default_backend()}), "
        f"jax {jax.__version__}; {torch_note or 'no PyTorch'}; batch {args.batch_size}, "
        f"{args.repeats} repeats, medians; freed host memory "
        f"{'retained' if retained else 'released (glibc default)'}", flush=True)
  rows = []
  for name in args.models.split(","):
    kind, kwargs, task, default_steps = MODELS[name]
    n_steps = args.steps or default_steps
    contenders = [align_jax_contender(f"align_jax[{v}]", kind, kwargs, task, v, args.batch_size)
                  for v in args.variants.split(",")]
    if not args.no_torch:
      contenders.append(_pytorch(name, args.batch_size))
    print(f"{name}: timing {', '.join(c.name for c in contenders)} "
          f"({n_steps} steps per turn)...", flush=True)
    result = _measure(contenders, n_steps, args.repeats, not args.no_inference)
    reference = result.get("pytorch")
    for c in contenders:
      train_ips = args.batch_size / result[c.name]["train"]
      infer_ips = args.batch_size / result[c.name]["infer"]
      timed = [k for k in ("train", "infer") if reference and not np.isnan(reference[k])]
      ratios = [f"{reference[k] / result[c.name][k]:.2f}x" if k in timed else "-"
                for k in ("train", "infer")]
      rows.append(f"| {name} | {c.name} | {train_ips:.1f} | {infer_ips:.0f} | "
                  f"{' | '.join(ratios)} | {c.first_call:.1f} |")
      print(rows[-1], flush=True)
  print("\n| model | contender | train images/s | inference images/s | train vs PyTorch | "
        "inference vs PyTorch | first call s |")
  print("|---|---|---|---|---|---|---|")
  print("\n".join(rows))


if __name__ == "__main__":
  main()
