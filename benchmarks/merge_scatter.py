"""Cost of bipartite_merge relative to one ViT-B layer, per scatter form.

Times, in one run on one device, one ViLT/ViT-B block (B=32, N=145, D=768,
12 heads, MLP 3072) and `bipartite_merge` on the same tokens with each
scatter form (`segment_sum`, `.at[].add`, one-hot matmul), and prints the
merge cost as a percentage of the layer. The fastest form per backend is the
default in `pumer_jax/reduce/merge.py` (DEFAULT_SCATTER). Target: <= 2%.

  python benchmarks/merge_scatter.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform

import jax
import jax.numpy as jnp
import numpy as np

from pumer_jax.models.vilt import ViltConfig, ViltLayer
from pumer_jax.reduce import bipartite_merge
from pumer_jax.bench.measure import time_jitted

FORMS = ("segment_sum", "at_add", "one_hot")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--tokens", type=int, default=145)
  parser.add_argument("--r", type=int, nargs="+", default=[16, 44])
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--out", default="benchmarks/results")
  args = parser.parse_args()

  config = ViltConfig()  # ViT-B: hidden 768, 12 heads, MLP 3072
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(args.batch, args.tokens, 768)), jnp.float32)
  size = jnp.ones((args.batch, args.tokens), jnp.float32)
  layer = ViltLayer(config)
  variables = jax.jit(layer.init)(jax.random.PRNGKey(0), x, size)
  keys = jax.jit(lambda v, x, s: layer.apply(
      v, x, s, method=ViltLayer.attend)[1]["keys"])(variables, x, size)

  layer_fn = jax.jit(lambda v, x, s: layer.apply(v, x, s)[0])
  layer_time = time_jitted(layer_fn, variables, x, size,
                           repeats=args.repeats)
  rows = []
  for r in args.r:
    for form in FORMS:
      merge_fn = jax.jit(lambda x, k, s, form=form, r=r: bipartite_merge(
          x, k, s, r, scatter=form))
      t = time_jitted(merge_fn, x, keys, size, repeats=args.repeats,
                      min_seconds=1.0)
      rows.append(dict(r=r, scatter=form, **t.as_dict(),
                       percent_of_layer=100 * t.median_s / layer_time.median_s))

  device = jax.devices()[0]
  result = dict(
      device=f"{device.platform}: {device.device_kind}",
      host=f"{platform.machine()}, {jax.local_device_count()} device(s), "
           f"{__import__('os').cpu_count()} cpu cores",
      jax=jax.__version__, batch=args.batch, tokens=args.tokens, dim=768,
      layer=layer_time.as_dict(), merges=rows,
  )
  best = {}
  for r in args.r:
    candidates = [row for row in rows if row["r"] == r]
    best[r] = min(candidates, key=lambda row: row["median_s"])["scatter"]
  result["fastest"] = best

  lines = [
      f"# bipartite_merge vs one ViT-B layer ({result['device']})",
      "",
      f"B={args.batch}, N={args.tokens}, D=768, float32, jax {jax.__version__},"
      f" {result['host']}. Layer median {layer_time.median_s * 1e3:.1f} ms "
      f"(p10 {layer_time.p10_s * 1e3:.1f}, p90 {layer_time.p90_s * 1e3:.1f}).",
      "",
      "| r | scatter | median ms | p10-p90 ms | % of layer |",
      "|---|---|---|---|---|",
  ]
  for row in rows:
    lines.append(
        f"| {row['r']} | {row['scatter']} | {row['median_s'] * 1e3:.3f} | "
        f"{row['p10_s'] * 1e3:.3f}-{row['p90_s'] * 1e3:.3f} | "
        f"{row['percent_of_layer']:.2f} |")
  lines += ["", f"Fastest per r: {best}"]
  table = "\n".join(lines)
  print(table)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  stem = f"merge_scatter_{device.platform}"
  (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
  (out / f"{stem}.md").write_text(table + "\n")


if __name__ == "__main__":
  main()
