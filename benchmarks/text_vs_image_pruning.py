r"""Text-informed against image-informed pruning, token for token.

PuMer prunes the image tokens the text attends to least; EViT those the
image [CLS] attends to least. This compares the two pruning rules alone, on
the same layers and with the same number of image tokens kept at every
reduction layer (so the same FLOPs): PuMer with no merging (m = t = 0,
official semantics) against EViT without its fused token (`fuse=False`),
and EViT as published (fused token, one more token). Scores on the test
split with 95% intervals, the paired difference PuMer - EViT with its
interval, and target recall per layer (`pumer_jax.evaluate.tradeoff`).

  python benchmarks/text_vs_image_pruning.py --config configs/vilt_shapes.py:pretrain \
      --model_dir checkpoints/vilt_shapes --layers 1,2 \
      --out benchmarks/results/text_vs_image_pruning_vilt_shapes
"""

from __future__ import annotations

import json
import pathlib

import jax

from pumer_jax import entry
from pumer_jax.data import loaders
from pumer_jax.evaluate import tradeoff
from pumer_jax.models import saved
from pumer_jax.reduce import ReduceConfig

PRUNE_RATIOS = (0.2, 0.4, 0.6, 0.8)


def kept_per_layer(model_config, reduce, image_len, text_len) -> list[int]:
  schedule = model_config.replace(reduce=reduce).schedule(image_len, text_len)
  return [s.keep for s in schedule.steps]


def matched_evit(model_config, pumer, image_len, text_len):
  """The EViT keep rate (0.01 steps) that keeps, at every layer, as many
  image tokens as `pumer` keeps; None where none does."""
  want = kept_per_layer(model_config, pumer, image_len, text_len)
  for step in range(100, 0, -1):
    evit = ReduceConfig(method="evit", layers=pumer.layers,
                        keep_rate=step / 100, fuse=False)
    if kept_per_layer(model_config, evit, image_len, text_len) == want:
      return evit
  return None


def main(argv=None) -> list[dict]:
  parser = entry.script_parser(__doc__.split("\n\n")[0])
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--layers", required=True,
                      help="the reduction layers, e.g. 1,2")
  parser.add_argument("--out", required=True, help="OUT.json and OUT.md")
  args = parser.parse_args(argv)
  entry.script_setup()
  config = entry.script_config(args)
  layers = tuple(int(x) for x in args.layers.split(","))
  model_config = saved.load_model(args.model_dir)[0].config
  hw = model_config.input_size or (model_config.image_size,) * 2
  image_len = (hw[0] // model_config.patch_size) * (
      hw[1] // model_config.patch_size) + 1
  text_len = config.data.text_len
  settings = {"none": tradeoff.Setting(args.model_dir, ReduceConfig(), "none")}
  pairs = []
  for p in PRUNE_RATIOS:
    pumer = ReduceConfig(method="pumer", layers=layers, prune_ratio=p)
    evit = matched_evit(model_config, pumer, image_len, text_len)
    if evit is None or not kept_per_layer(model_config, pumer, image_len,
                                          text_len):
      continue  # no EViT rate keeps the same counts, or PuMer prunes nothing
    point = f"p{p:g}"
    settings[f"pumer {point}"] = tradeoff.Setting(args.model_dir, pumer,
                                                  "pumer", point)
    settings[f"evit {point}"] = tradeoff.Setting(args.model_dir, evit,
                                                 "evit", point)
    settings[f"evit+fused {point}"] = tradeoff.Setting(
        args.model_dir, evit.replace(fuse=True), "evit+fused", point)
    pairs.append((f"pumer {point}", f"evit {point}"))
  rows = tradeoff.compare(settings, loaders.eval_batches(config, "test"),
                          records=tradeoff.recall_records(config, "test"),
                          differences=pairs, min_seconds=0)
  tradeoff.add_ratios(rows, "none")
  report = dict(model_dir=args.model_dir, config=args.config, layers=layers,
                split="test", device=str(jax.devices()[0].device_kind),
                rows=rows)
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
  lines = [f"# Text-informed (PuMer) vs image-informed (EViT) pruning: "
           f"`{args.model_dir}`, layers {layers}", "",
           f"Config `{args.config}`, test split, 95% bootstrap intervals; the "
           "difference rows are paired (same questions). PuMer prunes only "
           "(m = t = 0, official semantics); EViT keeps as many image tokens "
           "at every layer (`fuse=False`); EViT+fused adds its fused token.",
           "", "| setting | reduce | FLOP ratio | VQA score | 95% CI | "
           "target recall / background share per layer |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    lo, hi = r["ci95"]
    reduce = (ReduceConfig.from_mapping(r["reduce"]).describe()
              if "reduce" in r else "paired difference")
    ratio = f"{r['flop_ratio']:.3f}" if "flop_ratio" in r else ""
    recall = " ".join(f"{100 * l['target_recall']:.0f}/"
                      f"{100 * l['background_share']:.0f}"
                      for l in r.get("per_layer", []))
    sign = "+" if "reduce" not in r else ""
    lines.append(f"| {r['name']} | {reduce} | {ratio} | "
                 f"{100 * r['vqa_score']:{sign}.1f} | [{100 * lo:.1f}, "
                 f"{100 * hi:.1f}] | {recall} |")
  table = "\n".join(lines) + "\n"
  out.with_suffix(".md").write_text(table)
  print(table)
  return rows


if __name__ == "__main__":
  main()
