"""Where a train step's time goes: XLA's operations of one align_jax train step, by layer.

Traces --steps train steps (the engine's step, as in benchmarks/train_bench.py) with the JAX
profiler, maps every executed XLA operation to the model layer it came from (the HLO metadata
names the flax module, and whether the operation belongs to the forward pass or the gradient),
and prints milliseconds per step by layer kind and by layer, and their shares. Tracing adds a
little time to every operation: read the shares, and the step time of train_bench.

  python benchmarks/step_profile.py --model=philnet
  python benchmarks/step_profile.py --model=vae --layer_impl=xla
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

import jax
import train_bench

def _parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split("\n\n", 1)[1])
  parser.add_argument("--model", default="philnet", choices=sorted(train_bench.MODELS),
                      help="model to profile (default philnet)")
  parser.add_argument("--layer_impl", default="auto", help="auto, rewritten or xla, optionally "
                      "with :bfloat16 (default auto)")
  parser.add_argument("--batch_size", type=int, default=128, help="global batch (default 128)")
  parser.add_argument("--steps", type=int, default=3, help="traced steps (default 3)")
  parser.add_argument("--top", type=int, default=15, help="layers listed (default 15)")
  args = parser.parse_args(argv)
  if not train_bench.is_variant(args.layer_impl):
    parser.error(f"bad --layer_impl {args.layer_impl!r}: {train_bench.VARIANT_FORM}")
  if min(args.batch_size, args.steps, args.top) < 1:
    parser.error("batch_size, steps and top must be >= 1")
  return args


def _module_names(variables) -> set:
  """Every flax module name in a model's variables (the dict keys above the arrays)."""
  names = set()
  for path, _ in jax.tree_util.tree_flatten_with_path(variables)[0]:
    names.update(key.key for key in path[1:-1])  # below the collection, above the array's name
  return names


def _operation_sources(hlo_text: str, modules: set) -> dict:
  """{HLO instruction name: (layer, 'forward' | 'gradient' | '?', primitive)} from the op
  metadata; instructions without metadata (some of XLA's rewritten gradients) are attributed to
  '(unattributed)', and loops and calls are left out (their bodies' operations are counted)."""
  sources = {}
  for line in hlo_text.splitlines():
    match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (?:\([^)]*\)|\S+) ([\w\-]+)\(", line)
    if not match or match.group(2) in ("while", "conditional", "call"):
      continue
    op_name = re.search(r'op_name="([^"]*)"', line)
    if not op_name:
      sources[match.group(1)] = ("(unattributed)", "?", match.group(2))
      continue
    parts = op_name.group(1).split("/")
    layers = [p for p in parts if p in modules]
    sources[match.group(1)] = (layers[-1] if layers else "",
                               "gradient" if "transpose(" in op_name.group(1) else "forward",
                               re.sub(r"\W.*", "", parts[-1]))
  return sources


def main(argv=None) -> None:
  args = _parse_args(argv)
  print(f"{args.model}: compiling the train step, then timing and tracing {args.steps} steps...",
        flush=True)
  kind, kwargs, task, _ = train_bench.MODELS[args.model]
  contender = train_bench.align_jax_contender(args.model, kind, kwargs, task, args.layer_impl,
                                              args.batch_size)
  sources = _operation_sources(contender.train_hlo(), _module_names(contender.variables))
  contender.train(2)  # warm-up (the compilation is train_hlo's, cached)
  start = time.perf_counter()
  contender.train(args.steps)
  step_ms = (time.perf_counter() - start) / args.steps * 1000
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      contender.train(args.steps)
    (trace,) = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
    with gzip.open(trace) as f:
      events = json.load(f)["traceEvents"]
  by_kind, by_layer = collections.Counter(), collections.Counter()
  for event in events:
    if event.get("ph") != "X" or event["name"] not in sources:
      continue
    layer, direction, primitive = sources[event["name"]]
    ms = event["dur"] / 1000 / args.steps
    kind_name = re.sub(r"_\d+$", "", layer) if layer else f"(no layer) {primitive}"
    by_kind[(kind_name, direction)] += ms
    by_layer[(layer or f"(no layer) {primitive}", direction)] += ms
  total = sum(by_kind.values())
  print(f"{args.model}, align_jax[{args.layer_impl}], batch {args.batch_size}: {step_ms:.0f} ms "
        f"per step untraced; {total:.0f} ms of operations per traced step")
  for title, table in (("layer kind", by_kind), ("layer", by_layer)):
    print(f"\n| {title} | pass | ms/step | share |\n|---|---|---|---|")
    for (name, direction), ms in table.most_common(args.top):
      print(f"| {name} | {direction} | {ms:.1f} | {ms / total:.0%} |")


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from align_jax.runtime import host_memory  # pylint: disable=g-import-not-at-top
  host_memory.retain_freed_memory()  # as train_bench and the entry points do
  main()
