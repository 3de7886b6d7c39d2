"""bfloat16 vs float32 on a trained model: do the answers and the score hold?

Evaluates one model directory on a split twice, computing in float32 and in
bfloat16 (parameters stay float32; `dtype` sets the computation), for each
reducer, and reports the share of examples whose argmax answer agrees and
the two VQA scores. Targets: agreement >= 99%, score difference <= 0.5
points.

  python benchmarks/bf16_numerics.py --model_dir runs/shapes/model \
      --config configs/vilt_shapes.py [--methods none,pumer,tome]
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import numpy as np

from pumer_jax.configs.base import load_config
from pumer_jax.data import loaders
from pumer_jax.evaluate.runner import reducer_for
from pumer_jax.models import saved
from pumer_jax.models.inputs import model_inputs


def predictions(model_dir, config, reduce, dtype: str, batches):
  """(argmax answers, per-example VQA scores, valid) over the batches."""
  model, variables = saved.load_model(model_dir, reduce=reduce, dtype=dtype)
  forward = jax.jit(lambda p, b: model.apply({"params": p},
                                             **model_inputs(b))["logits"])
  answers, scores, valid = [], [], []
  for batch in batches():
    logits = np.asarray(forward(variables["params"], batch), np.float32)
    answer = logits.argmax(-1)
    answers.append(answer)
    scores.append(np.take_along_axis(batch["labels"], answer[:, None], -1)[:, 0])
    valid.append(np.asarray(batch["valid"], bool))
  return np.concatenate(answers), np.concatenate(scores), np.concatenate(valid)


def compare(model_dir, config, methods, batches) -> list[dict]:
  trained = saved.load_model(model_dir)[0].config.reduce
  rows = []
  for name in methods:
    reduce = reducer_for(name, config, trained)
    a32, s32, valid = predictions(model_dir, config, reduce, "float32",
                                  batches)
    a16, s16, _ = predictions(model_dir, config, reduce, "bfloat16", batches)
    rows.append(dict(
        method=name, examples=int(valid.sum()),
        argmax_agreement=float((a32 == a16)[valid].mean()),
        vqa_score_float32=float(s32[valid].mean()),
        vqa_score_bfloat16=float(s16[valid].mean()),
        score_difference_points=float(100 * (s16[valid].mean()
                                             - s32[valid].mean()))))
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--config", default="configs/vilt_shapes.py")
  parser.add_argument("--methods", default="none,pumer,tome")
  parser.add_argument("--split", default="test")
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--out", default="benchmarks/results")
  args = parser.parse_args()
  config = load_config(args.config)
  if args.data_dir:
    config.data.data_dir = args.data_dir
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
  out = pathlib.Path(args.out)
  stem = out / f"bf16_numerics_{device.platform}"
  stem.with_suffix(".json").write_text(json.dumps(dict(
      model_dir=args.model_dir, config=args.config, split=args.split,
      device=device.device_kind, rows=rows), indent=2) + "\n")
  stem.with_suffix(".md").write_text(table)


if __name__ == "__main__":
  main()
