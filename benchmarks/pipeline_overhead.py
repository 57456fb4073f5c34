"""What the input pipeline costs a training run: the train step fed by it against the same step
fed one fixed batch, side by side.

One align_jax contender of benchmarks/train_bench.py (the engine's data-parallel train step,
float32), in one process, in turns whose order alternates, each turn --steps steps that merge
the step's metrics as the training loop does (align_jax/training/loop.py):
  fixed batch   one host batch of the right shape, handed to every step (train_bench's way);
  pipeline      batches from input_pipeline.on_devices(train_batches(...)) over the CIFAR-10
                training images of --data_dir (official binary layout), with the task's
                preprocessing (crop, flip, normalisation): the loop's input, background
                thread and device prefetch included.
Reported: images/s (medians of --repeats turns) and their ratio, and the host preprocessing
time per batch measured on its own. Freed host memory is kept for reuse, as the entry points do.

  python benchmarks/pipeline_overhead.py --data_dir="$ALIGN_JAX_DATA_DIR"
  python benchmarks/pipeline_overhead.py --data_dir="$ALIGN_JAX_DATA_DIR" --model=vae --steps=20
"""

import argparse
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
  parser.add_argument("--repeats", type=int, default=6,
                      help="turns per feed; medians are reported (default 6)")
  args = parser.parse_args(argv)
  if min(args.batch_size, args.steps, args.repeats) < 1:
    parser.error("batch_size, steps and repeats must be >= 1")
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
  from align_jax.data import cifar10, input_pipeline  # pylint: disable=g-import-not-at-top
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
  batches = input_pipeline.on_devices(input_pipeline.train_batches(
      examples, args.batch_size, prep, seed=0), args.batch_size)
  feeds = {"fixed batch": contender.train, "pipeline": lambda n: contender.train_from(
      lambda: next(batches), n)}
  print(f"{args.model}, align_jax[{args.layer_impl}], batch {args.batch_size}, "
        f"{len(examples['image']):,} images from {args.data_dir}: compiling, then "
        f"{args.repeats} turns of {args.steps} steps per feed...", flush=True)
  for feed in feeds.values():  # compilation (of the step and of the metrics' merge) and warm-up
    feed(2)
  seconds = {name: [] for name in feeds}
  for r in range(args.repeats):
    for name in (list(feeds) if r % 2 == 0 else list(feeds)[::-1]):
      start = time.perf_counter()
      feeds[name](args.steps)
      seconds[name].append(time.perf_counter() - start)
    print(f"  turn {r + 1}/{args.repeats}: " + ", ".join(
        f"{name} {args.steps * args.batch_size / s[-1]:.0f} images/s"
        for name, s in seconds.items()), flush=True)
  rates = {name: args.steps * args.batch_size / statistics.median(s)
           for name, s in seconds.items()}
  host_batches = input_pipeline.train_batches(examples, args.batch_size, prep, seed=1)
  start = time.perf_counter()
  for _ in range(20):
    next(host_batches)
  preprocess_ms = (time.perf_counter() - start) / 20 * 1000
  print(f"\n| model | fixed batch images/s | pipeline images/s | pipeline / fixed | "
        f"host preprocessing ms/batch |\n|---|---|---|---|---|\n"
        f"| {args.model} | {rates['fixed batch']:.1f} | {rates['pipeline']:.1f} | "
        f"{rates['pipeline'] / rates['fixed batch']:.3f} | {preprocess_ms:.1f} |")


if __name__ == "__main__":
  main()
