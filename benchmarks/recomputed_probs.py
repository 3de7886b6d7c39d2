"""A reduction layer's attention: explicit softmax vs fused kernel + rows.

At a ViLT-B/32 reduction layer (text 32 + 145 image tokens, D 768, 12
heads), times in one run, on one device, the attention half of the layer
(as `ViltLayer.attend` runs it) computing what PuMer (sized semantics) reads, two ways:
`explicit` (every probability, the path the explicit backends take) and
`recomputed` (`jax.nn.dot_product_attention` for the output, the text rows
recomputed from q and k), in interleaved rounds, plus each program's
compiled temporaries. The faster path per backend is what
`layers.FUSED_ATTENTION_BACKENDS` picks.

  python benchmarks/recomputed_probs.py [--batch 8] [--dtype float32] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from pumer_jax.bench.measure import compiled_temp_bytes, time_jitted
from pumer_jax.bench.report import write_result
from pumer_jax.models.vilt import ViltConfig, ViltLayer

PATHS = {"explicit": dict(fused=False, prob_rows=None),
         "recomputed": dict(fused=True)}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--text", type=int, default=32)
  parser.add_argument("--image", type=int, default=145)
  parser.add_argument("--dtype", choices=("float32", "bfloat16"),
                      default="float32")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default="benchmarks/results")
  args = parser.parse_args(argv)

  config = ViltConfig(dtype=args.dtype)  # ViT-B: hidden 768, 12 heads
  dtype = jnp.dtype(args.dtype)
  n = args.text + args.image
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(args.batch, n, 768)), dtype)
  size = np.ones((args.batch, n), np.float32)
  size[:, args.text // 2:args.text] = 0.0  # padded text, as real questions
  size = jnp.asarray(size)
  layer = ViltLayer(config)
  variables = jax.jit(layer.init)(jax.random.PRNGKey(0), x, size)
  rows = slice(0, args.text)
  programs = {}
  for name, kwargs in PATHS.items():
    kwargs = {"prob_rows": rows, **kwargs}

    def attend(v, x, s, kwargs=kwargs):
      """The layer's attention as `attend` runs it; the text->image rows."""
      out, aux = layer.apply(v, x, s, method=lambda m, x, s: m.attention(
          m.layernorm_before(x), s, **kwargs))
      probs = aux["probs"]
      if "prob_rows" not in aux:
        probs = probs[:, :, rows]
      return x + out, probs[..., args.text:]

    fn = jax.jit(attend)
    programs[name] = (fn, fn.lower(variables, x, size).compile())
  outs = {name: jax.device_get(fn(variables, x, size))
          for name, (fn, _) in programs.items()}
  difference = {
      "output": float(np.abs(np.float32(outs["explicit"][0])
                             - np.float32(outs["recomputed"][0])).max()),
      "text_to_image": float(np.abs(np.float32(outs["explicit"][1])
                                    - np.float32(outs["recomputed"][1])).max())}
  medians = {name: [] for name in programs}
  for _ in range(args.rounds):  # interleaved: a drift hits both paths
    for name, (fn, _) in programs.items():
      medians[name].append(time_jitted(fn, variables, x, size,
                                       repeats=args.repeats).median_s)
  ratios = [r / e for r, e in zip(medians["recomputed"], medians["explicit"])]
  device = jax.devices()[0]
  result = dict(
      device=f"{device.platform}: {device.device_kind}",
      host=f"{platform.machine()}, {jax.local_device_count()} device(s), "
           f"{__import__('os').cpu_count()} cpu cores",
      jax=jax.__version__, batch=args.batch, text=args.text,
      image=args.image, dtype=args.dtype, rounds=args.rounds,
      paths={name: dict(median_s=statistics.median(medians[name]),
                        round_medians_s=medians[name],
                        temp_bytes=compiled_temp_bytes(compiled))
             for name, (_, compiled) in programs.items()},
      recomputed_over_explicit_time=statistics.median(ratios),
      round_ratios=ratios, max_abs_difference=difference,
      faster=("recomputed" if statistics.median(ratios) < 1 else "explicit"))
  lines = [f"# Reduction-layer attention: explicit vs fused + recomputed rows "
           f"({result['device']}, {args.dtype})", "",
           f"ViltLayer.attend at batch {args.batch}, {args.text} text "
           f"(half padded) + {args.image} image tokens, ViT-B widths; "
           f"{args.rounds} interleaved rounds of {args.repeats} calls.", "",
           "| path | median ms | compiled temporaries MiB |", "|---|---|---|"]
  for name, p in result["paths"].items():
    lines.append(f"| {name} | {1e3 * p['median_s']:.2f} | "
                 f"{(p['temp_bytes'] or 0) / 2**20:.1f} |")
  lines += ["", f"recomputed / explicit time: "
            f"{result['recomputed_over_explicit_time']:.3f} (rounds "
            f"{min(ratios):.3f}-{max(ratios):.3f}); max |difference|: output "
            f"{difference['output']:.2e}, text->image probabilities "
            f"{difference['text_to_image']:.2e}. Faster here: "
            f"{result['faster']}."]
  write_result(args.out, f"recomputed_probs_{device.platform}_{args.dtype}", result, lines)
  return result


if __name__ == "__main__":
  main()
