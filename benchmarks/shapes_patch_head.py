r"""What a shapes_vqa model's patch head sees: per attribute, on object patches.

  python benchmarks/shapes_patch_head.py --config configs/vilt_shapes.py:lab=grid12,pretrain \
      --model_dir runs/shapes_grid12_s1/model [--split test] [--out runs/patch_head.json]

The patch head (`model.patch_classes`) names each patch's object: background
or size + colour + shape (`data/shapes_patches.py`). Its joint accuracy on
object patches hides which attribute fails; here each attribute of the
predicted class is scored against the target's (a patch predicted as
background misses all three), with 95% intervals from resampling images,
and background patches are scored apart. Prints a markdown table; `--out`
also writes it as JSON.
"""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np

from pumer_jax import entry
from pumer_jax.data import loaders
from pumer_jax.data.shapes_vocab import PATCH_CLASSES
from pumer_jax.models import saved

ATTRIBUTES = ("size", "color", "shape")  # the order of a class's words


def attribute_hits(predicted: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
  """Per object patch (target > 0): whether the prediction is right overall
  and in each attribute. [N] class ids -> {name: bool [N]}."""
  words = np.array([["", "", ""]] + [c.split() for c in PATCH_CLASSES[1:]])
  hits = {"joint": predicted == target}
  for i, name in enumerate(ATTRIBUTES):
    hits[name] = (predicted > 0) & (words[predicted, i] == words[target, i])
  return hits


def _interval(per_image: list[tuple[int, int]], seed: int = 0) -> list[float]:
  """95% bootstrap interval of hits / count, resampling images."""
  counts = np.array(per_image, np.float64).reshape(-1, 2)
  rng = np.random.default_rng(seed)
  draws = rng.integers(0, len(counts), (1000, len(counts)))
  rates = counts[draws, 0].sum(1) / np.maximum(counts[draws, 1].sum(1), 1)
  return [float(np.percentile(rates, 2.5)), float(np.percentile(rates, 97.5))]


def main(argv=None) -> dict:
  parser = entry.script_parser(__doc__.split("\n\n")[0])
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--split", default="test")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  entry.script_setup()
  config = entry.script_config(args)
  model, variables = saved.load_model(args.model_dir)
  if not model.config.patch_classes:
    raise ValueError(f"{args.model_dir} has no patch head (model.patch_classes "
                     "is 0): nothing to measure.")
  apply = jax.jit(lambda v, b: model.apply(
      v, b["input_ids"], b["pixel_values"], b["attention_mask"],
      b["token_type_ids"], output_patch_logits=True)["patch_logits"].argmax(-1))
  per_image = {k: [] for k in ("joint", *ATTRIBUTES, "background")}
  for batch in loaders.eval_batches(config, args.split, patch_targets=True)():
    predicted = np.asarray(apply(variables, {k: batch[k] for k in (
        "input_ids", "pixel_values", "attention_mask", "token_type_ids")}))
    for pred, target, valid in zip(predicted, batch["patch_targets"], batch["valid"]):
      if not valid:
        continue
      shown = target > 0
      hits = attribute_hits(pred[shown], target[shown])
      for name, hit in hits.items():
        per_image[name].append((int(hit.sum()), int(shown.sum())))
      per_image["background"].append(
          (int((pred[~shown] == 0).sum()), int((~shown).sum())))
  table = {}
  for name, counts in per_image.items():
    hits, total = np.array(counts).sum(0)
    table[name] = dict(accuracy=float(hits / max(total, 1)), patches=int(total),
                       ci95=_interval(counts))
  lines = [f"patch head of {args.model_dir} on {args.split} "
           f"({len(per_image['joint'])} images)", "",
           "| patches | scored | accuracy | 95% CI |", "|---|---|---|---|"]
  for name, row in table.items():
    lo, hi = row["ci95"]
    what = "background patches" if name == "background" else f"object patches: {name}"
    lines.append(f"| {what} | {row['patches']} | {100 * row['accuracy']:.1f}% | "
                 f"[{100 * lo:.1f}, {100 * hi:.1f}] |")
  print("\n".join(lines))
  if args.out:
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(model_dir=args.model_dir, config=args.config,
                                   split=args.split, patch_head=table), indent=2) + "\n")
    print(f"wrote {out}")
  return table


if __name__ == "__main__":
  main()
