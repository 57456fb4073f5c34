"""What the input pipelines cost a training run: the train step fed by each against the same
step fed one fixed batch, side by side; and each pipeline alone.

One align_jax contender of benchmarks/train_bench.py (the engine's data-parallel train step,
float32), in one process, in turns whose order alternates, each turn --steps steps that merge
the step's metrics as the training loop does (align_jax/training/loop.py):
  fixed batch   one host batch of the right shape, handed to every step (train_bench's way);
  host          batches from input_pipeline.on_devices(train_batches(...)) over the CIFAR-10
                training images of --data_dir (official binary layout), with the task's
                preprocessing (crop, flip, normalisation): the loop's input, background
                thread and device prefetch included;
  device        the training images on the device and the step drawing and augmenting its own
                batch (data/device_pipeline.py; the loop's input when the images fit).
Then each pipeline alone, in alternating turns: augmented batches per second from the host
thread (on_devices: preprocessing and the transfer) against the device pipeline's jitted
batch drawing (its epoch order included once per epoch, as in training).
Reported: images/s (medians of --repeats turns) and the ratios. Freed host memory is kept for
reuse, as the entry points do.

  python benchmarks/pipeline_overhead.py --data_dir="$ALIGN_JAX_DATA_DIR"
  python benchmarks/pipeline_overhead.py --data_dir="$ALIGN_JAX_DATA_DIR" --model=vae --steps=20
"""

import argparse
import itertools
import os
import statistics
import sys
import time


def _parse_args(argv, models):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split("\n\n", 1)[1])
  parser.add_argument("--data_dir", default=os.environ.get("ALIGN_JAX_DATA_DIR", ""),
                      help="folder holding cifar-10-batches-bin/ (default: $ALIGN_JAX_DATA_DIR)")
  parser.add_argument("--model", default="philnet", choices=sorted(models),
                      help="model (default philnet)")
  parser.add_argument("--layer_impl", default="auto", choices=("auto", "rewritten", "xla"),
                      help="layer policy (models/layers.py; default auto)")
  parser.add_argument("--batch_size", type=int, default=128, help="global batch (default 128)")
  parser.add_argument("--steps", type=int, default=10, help="steps per turn (default 10)")
  parser.add_argument("--alone_batches", type=int, default=100,
                      help="batches per turn when each pipeline runs alone (default 100)")
  parser.add_argument("--repeats", type=int, default=6,
                      help="turns per feed; medians are reported (default 6)")
  args = parser.parse_args(argv)
  if min(args.batch_size, args.steps, args.repeats, args.alone_batches) < 1:
    parser.error("batch_size, steps, alone_batches and repeats must be >= 1")
  if not args.data_dir:
    parser.error("no --data_dir and ALIGN_JAX_DATA_DIR is not set: point it at a folder "
                 "holding cifar-10-batches-bin/ (docs/data.md)")
  return parser, args


def main(argv=None) -> None:
  here = os.path.dirname(os.path.abspath(__file__))
  sys.path.insert(0, here)
  sys.path.insert(0, os.path.dirname(here))
  import train_bench  # pylint: disable=g-import-not-at-top
  parser, args = _parse_args(argv, train_bench.MODELS)
  from align_jax.runtime import host_memory  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from align_jax.data import cifar10, device_pipeline, input_pipeline  # pylint: disable=g-import-not-at-top
  from align_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  from align_jax.runtime import parallel  # pylint: disable=g-import-not-at-top
  try:
    data = cifar10.load_binary(args.data_dir)
    parallel.check_batch_size(args.batch_size)
  except InputError as e:
    parser.error(str(e))
  if args.batch_size > len(data.train_images):
    parser.error(f"--batch_size={args.batch_size} exceeds the {len(data.train_images):,} "
                 "training images")
  host_memory.retain_freed_memory()
  kind, kwargs, task, _ = train_bench.MODELS[args.model]
  contender = train_bench.align_jax_contender(args.layer_impl, kind, kwargs, task,
                                              args.layer_impl, args.batch_size)
  prep = input_pipeline.PREPROCESSING[contender.preprocessing]
  examples = {"image": data.train_images, "label": data.train_labels}
  steps_per_epoch = len(examples["image"]) // args.batch_size
  device_batches = device_pipeline.DeviceBatches(args.batch_size, steps_per_epoch, prep)
  host = input_pipeline.on_devices(input_pipeline.train_batches(
      examples, args.batch_size, prep, seed=0), args.batch_size)
  sources = device_batches.sources(examples, device_pipeline.data_key(0))
  device_step = contender.device_step(device_batches)
  feeds = {"fixed batch": contender.train,
           "host": lambda n: contender.train_from(lambda: next(host), n),
           "device": lambda n: contender.train_from(lambda: next(sources), n, device_step)}
  print(f"{args.model}, align_jax[{args.layer_impl}], batch {args.batch_size}, "
        f"{len(examples['image']):,} images from {args.data_dir}: compiling, then "
        f"{args.repeats} turns of {args.steps} steps per feed...", flush=True)
  step_rates = _alternating(feeds, args.repeats, args.steps, args.batch_size)

  host_alone = input_pipeline.on_devices(input_pipeline.train_batches(
      examples, args.batch_size, prep, seed=1), args.batch_size)
  draw = jax.jit(device_batches.draw)
  alone_sources = device_batches.sources(examples, device_pipeline.data_key(1))
  counter = itertools.count()

  def device_alone(n):
    for _ in range(n):
      batch = draw(next(alone_sources), next(counter))
    jax.block_until_ready(batch)

  def host_thread(n):
    for _ in range(n):
      batch = next(host_alone)
    jax.block_until_ready(batch)

  print("each pipeline alone...", flush=True)
  pipeline_rates = _alternating({"host": host_thread, "device": device_alone}, args.repeats,
                                args.alone_batches, args.batch_size)
  print(f"\n| model | batch | fixed batch | host pipeline | device pipeline | host / fixed | "
        f"device / fixed | device / host |\n|---|---|---|---|---|---|---|---|\n"
        f"| {args.model} train step, images/s | {args.batch_size} | "
        f"{step_rates['fixed batch']:.1f} | {step_rates['host']:.1f} | "
        f"{step_rates['device']:.1f} | {step_rates['host'] / step_rates['fixed batch']:.3f} | "
        f"{step_rates['device'] / step_rates['fixed batch']:.3f} | "
        f"{step_rates['device'] / step_rates['host']:.3f} |\n"
        f"| pipeline alone, augmented images/s | {args.batch_size} | - | "
        f"{pipeline_rates['host']:.0f} | {pipeline_rates['device']:.0f} | - | - | "
        f"{pipeline_rates['device'] / pipeline_rates['host']:.1f} |")


def _alternating(feeds: dict, repeats: int, n: int, batch_size: int) -> dict[str, float]:
  """images/s of each feed (a callable running n steps or batches of batch_size), medians of
  `repeats` turns in alternating order, after two warm-up calls each (compilation)."""
  for feed in feeds.values():
    feed(2)
  seconds = {name: [] for name in feeds}
  for r in range(repeats):
    for name in (list(feeds) if r % 2 == 0 else list(feeds)[::-1]):
      start = time.perf_counter()
      feeds[name](n)
      seconds[name].append(time.perf_counter() - start)
    print(f"  turn {r + 1}/{repeats}: " + ", ".join(
        f"{name} {n * batch_size / s[-1]:.0f} images/s" for name, s in seconds.items()),
          flush=True)
  return {name: n * batch_size / statistics.median(s) for name, s in seconds.items()}

if __name__ == "__main__":
  main()
