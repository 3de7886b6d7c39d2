r"""Why a shapes_vqa model fails position questions: two measurements.

1. Mirroring: the share of left/right answers that change when the image is
   mirrored left-right, and of above/below answers when it is flipped
   upside down. A model that reads where objects are changes most of them.
2. A linear probe: whether the left/right half of each object can be read,
   by least squares, from that object's own patch token after each layer
   (ViLT) or vision/fusion layer (METER): the information the answer would
   need, where it sits.

  python benchmarks/shapes_position_diagnostics.py \
      --config configs/vilt_shapes.py:pretrain \
      --model_dir checkpoints/vilt_shapes \
      --out benchmarks/results/position_diagnostics_vilt_shapes.json
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from pumer_jax import entry
from pumer_jax.data import loaders
from pumer_jax.data.shapes_vocab import ANSWERS
from pumer_jax.evaluate.score import forward as compiled_forward
from pumer_jax.evaluate.score import load
from pumer_jax.evaluate.target_recall import first_patch_column, split_records

PROBE_BATCHES = 8  # of the train split, for the probe's fit (3/4) and test


def _layers(out) -> dict[str, np.ndarray]:
  """Image-token hidden states per layer: {name: [B, image tokens..., D]}."""
  hidden = out["hidden_states"]
  if isinstance(hidden, dict):  # METER: per module
    return {f"{k}_{i}": np.asarray(h) for k in ("vision", "fusion_image")
            for i, h in enumerate(hidden[k])}
  return {f"layer_{i}": np.asarray(h) for i, h in enumerate(hidden)}


def main(argv=None) -> dict:
  parser = entry.script_parser(__doc__.split("\n\n")[0])
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--out", required=True, help="the JSON to write")
  args = parser.parse_args(argv)
  entry.script_setup()
  config = entry.script_config(args)
  model_dir = args.model_dir
  model, variables = load(model_dir)
  c = model.config
  grid = c.image_size // c.patch_size
  forward = compiled_forward(model, output_hidden_states=True)
  params = variables["params"]

  flips = {"left": 2, "right": 2, "above": 1, "below": 1}  # axis to flip
  changed = {"left or right": [], "above or below": []}
  for batch in loaders.eval_batches(config, "test")():
    answer = np.asarray(forward(params, batch)["logits"]).argmax(-1)
    for axis, kind in ((2, "left or right"), (1, "above or below")):
      flipped = dict(batch, pixel_values=np.flip(batch["pixel_values"], axis))
      again = np.asarray(forward(params, flipped)["logits"]).argmax(-1)
      for row in np.flatnonzero(batch["valid"]):
        word = ANSWERS[answer[row]]
        if flips.get(word) == axis:
          changed[kind].append(bool(again[row] != answer[row]))

  records = split_records(config, "train")
  features: dict[str, list] = {}
  right_half = []
  for n, batch in enumerate(loaders.eval_batches(config, "train")()):
    if n == PROBE_BATCHES:
      break
    layers = _layers(forward(params, batch))
    first = first_patch_column(c, batch)
    for row in np.flatnonzero(batch["valid"]):
      record = records[int(batch["example_id"][row])]
      for y, x in record["objects"]["center"]:
        col, line = int(x // c.patch_size), int(y // c.patch_size)
        for name, h in layers.items():
          offset = first if name.startswith("layer") else 1
          features.setdefault(name, []).append(h[row, offset + line * grid + col])
        right_half.append(col >= grid // 2)
  target = np.asarray(right_half, np.float64) * 2 - 1
  fit = len(target) * 3 // 4
  probe = {}
  for name, rows in features.items():
    a = np.concatenate([np.asarray(rows, np.float64),
                        np.ones((len(rows), 1))], axis=1)
    w = np.linalg.lstsq(a[:fit], target[:fit], rcond=None)[0]
    probe[name] = float(((a[fit:] @ w > 0) == (target[fit:] > 0)).mean())

  report = dict(
      model_dir=str(model_dir),
      mirrored_answers_changed={k: dict(n=len(v), share=float(np.mean(v)) if v
                                        else None) for k, v in changed.items()},
      probe_objects=int(len(target) - fit), probe_right_half_accuracy=probe)
  path = pathlib.Path(args.out)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(report, indent=2) + "\n")
  print(json.dumps(report, indent=2))
  return report


if __name__ == "__main__":
  main()
