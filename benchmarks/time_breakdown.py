"""Where a reduction layer's time goes: attention, MLP, and the reducer's
scoring, matching and gathers/scatters.

For each method of a ViLT preset, compiles the inference forward, profiles a
few calls (`jax.profiler`, a Perfetto trace) and attributes every executed
XLA instruction to its layer and part by the instruction's `op_name`
metadata: the layer's `attend` / `feed_forward` module scopes, the reducer
step's `reducer_{layer}` scope and, inside it, the `score` / `match` /
`apply` scopes of the shared building blocks (`pumer_jax/reduce/scopes.py`).
Times are summed over the trace's threads (CPU time per call), so shares
are of the layer's work. ViLT presets only (METER's fusion blocks are not
attributed yet).

  python benchmarks/time_breakdown.py --preset vilt_vqa [--batch 8] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import pathlib
import re
import tempfile

import jax

from pumer_jax import xla_cpu
from pumer_jax.bench import presets as presets_lib
from pumer_jax.bench.programs import ParamStore, _example_inputs, compile_forward
from pumer_jax.bench.report import write_result
from pumer_jax.reduce.scopes import PARTS

_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=.*?op_name="([^"]+)"', re.M)
_LAYER = re.compile(r"/layer_(\d+)\.(attend|feed_forward)")
_REDUCER = re.compile(r"/reducer_(\d+)/")


def instruction_scopes(hlo_text: str) -> dict[str, str]:
  """Instruction name -> its op_name, from a compiled module's text."""
  return {name: op for name, op in _INSTRUCTION.findall(hlo_text)}


def attribute(op_name: str) -> tuple[int, str] | None:
  """(layer, part) of an instruction, or None outside the layers."""
  if m := _REDUCER.search(op_name):
    inner = [p for p in op_name[m.end():].split("/") if p in PARTS]
    return int(m[1]), f"reducer {inner[-1]}" if inner else "reducer other"
  if m := _LAYER.search(op_name):
    return int(m[1]), "attention" if m[2] == "attend" else "mlp"
  return None


def profile(fn, args, calls: int) -> dict[str, float]:
  """Microseconds per call of each executed instruction (summed threads)."""
  with tempfile.TemporaryDirectory() as log_dir:
    jax.profiler.start_trace(log_dir, create_perfetto_trace=True)
    for _ in range(calls):
      jax.block_until_ready(fn(*args))
    jax.profiler.stop_trace()
    trace = next(pathlib.Path(log_dir).rglob("*perfetto_trace.json.gz"))
    events = json.load(gzip.open(trace))
  events = events["traceEvents"] if isinstance(events, dict) else events
  total = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and "dur" in e:
      total[e["name"]] += float(e["dur"]) / calls
  return total


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--preset", default="vilt_vqa",
                      choices=("vilt_vqa", "vilt_ve", "tiny"))
  parser.add_argument("--methods", default="")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--calls", type=int, default=5)
  parser.add_argument("--out", default="benchmarks/results")
  args = parser.parse_args(argv)
  xla_cpu.apply_fast_defaults()
  preset = presets_lib.PRESETS[args.preset]
  model = preset.model.replace(input_size=None)
  names = [n for n in args.methods.split(",") if n] or list(preset.methods)
  store = ParamStore(model, preset.text_len, preset.image_size, seed=0)
  rows = []
  for name in names:
    reduce = preset.methods[name]
    hw = presets_lib.method_image_size(reduce, preset.image_size)
    inputs = _example_inputs(args.batch, preset.text_len, hw,
                             model.vocab_size, 0)
    params = store.get(reduce)
    compiled = compile_forward(model, reduce, params, inputs)
    scopes = instruction_scopes(compiled.as_text())
    jax.block_until_ready(compiled(params, *inputs))  # warm up
    per_call = profile(compiled, (params, *inputs), args.calls)
    layers = collections.defaultdict(collections.Counter)
    for instruction, us in per_call.items():
      where = attribute(scopes.get(instruction, ""))
      if where is not None:
        layers[where[0]][where[1]] += us
    sched = presets_lib.schedule(model, reduce, preset.text_len, preset.image_size)
    for layer in sched.layers:
      parts = layers[layer]
      total = sum(parts.values())
      rows.append(dict(
          method=name, layer=layer, layer_us=total,
          shares={k: v / total for k, v in sorted(parts.items())} if total
          else {}))
  device = jax.devices()[0]
  result = dict(preset=args.preset, batch=args.batch, calls=args.calls,
                device=f"{device.platform}: {device.device_kind}",
                jax=jax.__version__, rows=rows)
  header = ("attention", "mlp", "reducer score", "reducer match",
            "reducer apply", "reducer other")
  lines = [f"# Reduction layers' time by part: {args.preset}, batch "
           f"{args.batch}, {result['device']}", "",
           "CPU time per call summed over threads, from a profiler trace "
           f"of {args.calls} calls; shares of the layer's total.", "",
           "| method | layer | layer ms | " + " | ".join(header) + " |",
           "|---|---|---|" + "---|" * len(header)]
  for r in rows:
    lines.append(f"| {r['method']} | {r['layer']} | {r['layer_us'] / 1e3:.2f} | "
                 + " | ".join(f"{100 * r['shares'].get(h, 0):.1f}%"
                              for h in header) + " |")
  write_result(args.out, f"time_breakdown_{args.preset}_{device.platform}", result, lines)
  return result


if __name__ == "__main__":
  main()
