"""bfloat16 vs float32 on a trained model: do the answers and the score hold?

Scores one model directory on a split twice with `pumer_jax.evaluate.score`,
computing in float32 and in bfloat16 (parameters stay float32; `dtype` sets
the computation), for each reducer, and reports the share of examples whose
argmax answer agrees and the two VQA scores. Targets: agreement >= 99%,
score difference <= 0.5 points.

  python benchmarks/bf16_numerics.py --config configs/vilt_shapes.py:pretrain \
      --model_dir checkpoints/vilt_shapes [--methods none,pumer,tome]
"""

from __future__ import annotations

import json
import pathlib

import jax

from pumer_jax import entry
from pumer_jax.data import loaders
from pumer_jax.evaluate.runner import reducer_for
from pumer_jax.evaluate.score import score
from pumer_jax.models import saved


def compare(model_dir, config, methods, batches) -> list[dict]:
  """One row per method: examples, argmax agreement, both scores."""
  trained = saved.load_model(model_dir)[0].config.reduce
  rows = []
  for name in methods:
    reduce = reducer_for(name, config, trained)
    full = score(model_dir, batches, reduce=reduce, dtype="float32")
    half = score(model_dir, batches, reduce=reduce, dtype="bfloat16")
    rows.append(dict(
        method=name, examples=int(len(full.scores)),
        argmax_agreement=float((full.answers == half.answers).mean()),
        vqa_score_float32=full.mean, vqa_score_bfloat16=half.mean,
        score_difference_points=100 * (half.mean - full.mean)))
  return rows


def main(argv=None) -> None:
  parser = entry.script_parser(__doc__.split("\n")[0])
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--methods", default="none,pumer,tome")
  parser.add_argument("--split", default="test")
  parser.add_argument("--out", default="benchmarks/results")
  args = parser.parse_args(argv)
  entry.script_setup()
  config = entry.script_config(args)
  batches = loaders.eval_batches(config, args.split)
  rows = compare(args.model_dir, config, args.methods.split(","), batches)
  device = jax.devices()[0]
  lines = [f"# bfloat16 vs float32, {args.model_dir} on {args.split} "
           f"({device.platform}: {device.device_kind})", "",
           "| method | examples | argmax agreement | VQA fp32 | VQA bf16 | "
           "difference (points) |", "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['method']} | {r['examples']} | "
                 f"{r['argmax_agreement']:.2%} | {r['vqa_score_float32']:.2%}"
                 f" | {r['vqa_score_bfloat16']:.2%} | "
                 f"{r['score_difference_points']:+.2f} |")
  table = "\n".join(lines) + "\n"
  print(table)
  stem = pathlib.Path(args.out) / f"bf16_numerics_{device.platform}"
  stem.with_suffix(".json").write_text(json.dumps(dict(
      model_dir=args.model_dir, config=args.config, split=args.split,
      device=device.device_kind, rows=rows), indent=2) + "\n")
  stem.with_suffix(".md").write_text(table)


if __name__ == "__main__":
  main()
