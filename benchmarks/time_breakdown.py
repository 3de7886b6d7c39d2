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
from pumer_jax.bench.breakdown import HEADER, measure
from pumer_jax.bench.measure import cpu_model
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
  measured = measure(model, {n: preset.methods[n] for n in names},
                     preset.text_len, preset.image_size, args.batch, args.calls)
  rows = [dict(method=name, **row) for name in names for row in measured[name]]
  result = dict(preset=args.preset, batch=args.batch, calls=args.calls,
                device="cpu, XLA single-threaded with YNNPACK (breakdown.CHILD_FLAGS)",
                cpu=cpu_model(), jax=jax.__version__, rows=rows)
  header = [h for h in HEADER if any(h in r["shares"] for r in rows)]
  lines = [f"# Reduction layers' time by part: {args.preset}, batch "
           f"{args.batch}, {result['device']}", "",
           f"{result['cpu']}. Each instruction's time per call from a profiler "
           f"trace of {args.calls} calls on single-threaded XLA:CPU with YNNPACK fusions; shares of the "
           "layer's total. Coverage: the traced instructions' time over the "
           "call's wall time.", "",
           "| method | layer | layer ms | " + " | ".join(header) + " | coverage |",
           "|---|---|---|" + "---|" * len(header) + "---|"]
  for r in rows:
    lines.append(f"| {r['method']} | {r['layer']} | {r['layer_us'] / 1e3:.2f} | "
                 + " | ".join(f"{100 * r['shares'].get(h, 0):.1f}%"
                              for h in header) + f" | {r['coverage']:.2f} |")
  write_result(args.out, f"time_breakdown_{args.preset}_cpu", result, lines)
  return result


if __name__ == "__main__":
  main()
