"""Where a reduction layer's time goes, per method of a preset: attention
(and METER's cross-attention), MLP, and the reducer's scoring, matching and
gathers/scatters (`pumer_jax/bench/breakdown.py` says how instructions are
attributed). The benchmark's `--time_breakdown` puts the same rows in its
JSON; this script runs only this part, on any preset.

  python benchmarks/time_breakdown.py --preset vilt_vqa [--batch 8] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse

import jax

from pumer_jax import xla_cpu
from pumer_jax.bench import presets as presets_lib
from pumer_jax.bench.breakdown import HEADER, layer_breakdown
from pumer_jax.bench.programs import ParamStore, _example_inputs, compile_forward
from pumer_jax.bench.report import write_result


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--preset", default="vilt_vqa",
                      choices=sorted(presets_lib.PRESETS))
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
    sched = presets_lib.schedule(model, reduce, preset.text_len, preset.image_size)
    base = presets_lib.schedule(model, preset.methods["pumer"], preset.text_len,
                                preset.image_size)
    for row in layer_breakdown(compiled, (params, *inputs),
                               sched.layers or base.layers, args.calls):
      rows.append(dict(method=name, **row))
  device = jax.devices()[0]
  result = dict(preset=args.preset, batch=args.batch, calls=args.calls,
                device=f"{device.platform}: {device.device_kind}",
                jax=jax.__version__, rows=rows)
  header = [h for h in HEADER if any(h in r["shares"] for r in rows)]
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
