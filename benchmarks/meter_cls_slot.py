r"""Where METER's image [CLS] goes under PuMer's two semantics.

METER's image pooler reads slot 0 of the image stream. Official semantics
(PuMer's reference code) ranks the [CLS] with the patches, so after a
reduction slot 0 may hold a patch; sized semantics keeps the [CLS] first.
For each PuMer schedule in fusion block 0 (p = m = t = RATIO, the semantics
ablation's METER points), counts the test questions whose slot 0 still
holds the [CLS] after the reduction and those where the [CLS] survives in
any slot, from the model's source map (`track_source=True`).

  python benchmarks/meter_cls_slot.py \
      --config configs/meter_vqa.py:shapes,pretrain \
      --model_dir checkpoints/meter_shapes \
      --out benchmarks/results/meter_cls_slot.json
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from pumer_jax import entry
from pumer_jax.data import loaders
from pumer_jax.evaluate.score import forward, load
from pumer_jax.reduce import ReduceConfig

RATIOS = (0.1, 0.25, 0.6)  # the ablation's 0.91, 0.82 and 0.71 points


def cls_counts(model_dir, config, reduce: ReduceConfig) -> dict[str, int]:
  """Test questions whose [CLS] sits in slot 0, or anywhere, after the
  last reduction."""
  model, variables = load(model_dir, reduce)
  tracked = forward(model, track_source=True)
  counts = dict(questions=0, cls_in_slot_0=0, cls_anywhere=0)
  for batch in loaders.eval_batches(config, "test")():
    out = tracked(variables["params"], batch)
    source = np.asarray(out["sources"][-1])  # [B, N, N0]
    real = np.asarray(batch["valid"], bool)
    from_cls = source[real, :, 0] > 0  # [b, N]: slot holds original token 0
    counts["questions"] += int(real.sum())
    counts["cls_in_slot_0"] += int(from_cls[:, 0].sum())
    counts["cls_anywhere"] += int(from_cls.any(-1).sum())
  return counts


def main(argv=None) -> list[dict]:
  parser = entry.script_parser(__doc__.split("\n\n")[0])
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--out", required=True, help="the JSON to write")
  args = parser.parse_args(argv)
  entry.script_setup()
  config = entry.script_config(args)
  model_dir = args.model_dir
  rows = []
  for ratio in RATIOS:
    for semantics in ("official", "sized"):
      reduce = ReduceConfig(method="pumer", semantics=semantics, layers=(0,),
                            prune_ratio=ratio, image_merge_ratio=ratio,
                            text_merge_ratio=ratio, clamp_merge=True)
      row = dict(ratio=ratio, semantics=semantics,
                 **cls_counts(model_dir, config, reduce))
      rows.append(row)
      print(row, flush=True)
  path = pathlib.Path(args.out)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(dict(model_dir=model_dir, split="test",
                                  rows=rows), indent=2) + "\n")
  print(f"wrote {path}")
  return rows


if __name__ == "__main__":
  main()
