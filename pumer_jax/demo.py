"""`make demo`: the accuracy/cost trade-off of every reducer, on a laptop CPU.

Starts from a shipped laboratory model (`--lab`, `LABS`) on the embedded
`shapes_vqa` dataset:

1. Generates the dataset (once; no download).
2. Searches every registered reducer that has a search space on the
   validation split, for three operating points: compiled FLOP ratios of at
   most 0.80, 0.65 and 0.50 of the unreduced model (`search.py`). A reducer
   with parameters of its own (DynamicViT) is costed only: its most
   expensive setting within the point. A point out of a reducer's reach
   takes its cheapest setting, marked in the table.
3. Fine-tunes every reducer at the 0.50 point for the same short schedule,
   each distilled from the unreduced model.
4. Evaluates everything on the test split (`evaluate/tradeoff.py`): VQA
   score with a 95% bootstrap interval, compiled FLOP ratio, speedup (all
   timed in this process), tokens per layer, and target recall /
   background share per reduction layer.
5. Prints the table and writes --root/demo_results.json, the Pareto plot
   (pareto.png) and the picture of what each reducer keeps
   (reductions.png).

Re-running resumes: finished searches and trained runs are reused, for the
same model weights, data and settings only (a replaced checkpoint searches
and trains anew).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import time

import jax

from pumer_jax import search, visualize, xla_cpu
from pumer_jax.configs.base import load_config
from pumer_jax.data import loaders
from pumer_jax.evaluate import report, text_only, tradeoff
from pumer_jax.models import saved
from pumer_jax.reduce import METHODS, ReduceConfig
from pumer_jax.train import finetune

ROOT = pathlib.Path(__file__).parent.parent


@dataclasses.dataclass(frozen=True)
class Lab:
  """A laboratory: the shipped model and the config of its data."""

  config: str
  model_dir: pathlib.Path
  train_examples: int  # the first N of the model's train split, for tuning


LABS = {
    # The first laboratory: a 4x4 grid, every object inside one patch.
    "grid4": Lab(str(ROOT / "configs" / "vilt_shapes.py") + ":pretrain",
                 ROOT / "checkpoints" / "vilt_shapes", 4000),
    # The second: ViLT-B/32's geometry, 145 image tokens, objects spanning
    # patches (12 layers: its search and distillation take longer).
    "grid12": Lab(str(ROOT / "configs" / "vilt_shapes.py")
                  + ":lab=grid12,pretrain",
                  ROOT / "checkpoints" / "vilt_shapes_grid12", 4000),
}
TARGETS = (0.80, 0.65, 0.50)
# A setting counts as reaching a point within this much of its FLOP ratio
# (the compiled ratio of a setting the lowered program put just under it).
REACH_TOLERANCE = 0.005
TRAIN_POINT = 0.50
DISTILL = dict(total_steps=100, lr=1e-4, warmup_steps=10)


def demo_config(lab: Lab, root: pathlib.Path):
  config = load_config(lab.config)
  config.unlock()
  config.data.data_dir = str(root / "data")
  config.data.builder_config.num_train = lab.train_examples
  config.progress = False
  config.lock()
  return config


def cache_key(*parts: str) -> str:
  """8 hex digits naming a cached result by everything it depends on."""
  return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:8]


def searched_methods(model_config) -> list[str]:
  """The registered reducers `search` can try on this model."""
  out = []
  for name in sorted(METHODS):
    try:
      search.candidates(name, model_config)
    except ValueError:
      continue
    out.append(name)
  return out


def operating_points(config, model_dir, weights: str, root
                     ) -> dict[str, dict]:
  """{"method@target": best row} from the search on validation, cached in a
  file named by the model's `weights` digest, the data, the methods' search
  spaces and the targets (another model or data searches anew, beside)."""
  batches = loaders.eval_batches(config, "validation")
  model_config = finetune.build_model_config(config)
  methods = searched_methods(model_config)
  spaces = {m: search.candidates(m, model_config) for m in methods}
  path = root / "operating_points_{}.json".format(cache_key(
      weights, config.data.to_json(sort_keys=True), repr(spaces),
      repr(TARGETS)))
  points = json.loads(path.read_text()) if path.exists() else {}
  costs = {}  # shared: each schedule is costed once for all targets
  for method in methods:
    for target in TARGETS:
      key = f"{method}@{target:.2f}"
      if key in points:
        continue
      points[key] = best = point(model_dir, batches, method, target,
                                 spaces[method], costs)
      path.write_text(json.dumps(points, indent=2) + "\n")
      got = ("untrained" if best["score"] is None
             else f"val {100 * best['score']:.1f}%")
      print(f"[demo]   {key}: {got} at FLOP ratio {best['flop_ratio']:.3f}"
            + ("" if best["reached"] else " (out of its reach: its "
               "cheapest setting)"))
  return points


def point(model_dir, batches, method: str, target: float, options, costs
          ) -> dict:
  """The method's most accurate setting within `target` (`search`); where
  none reaches it, its cheapest, marked `reached: False` (a method that
  prunes only image tokens cannot remove the text's share). A method that
  must be trained first (`score` None) takes its most expensive setting
  within the target."""
  try:
    best = search.search(model_dir, batches, method, target, top=2,
                         options=options, progress=False, cost_cache=costs)[0]
  except ValueError:  # no setting reaches the budget
    best = search.search(model_dir, batches, method, target, top=1,
                         options=options, progress=False, cost_cache=costs,
                         rank="cost")[0]
    reduce = ReduceConfig.from_mapping(best["reduce"])
    if not reduce.param_stages():  # scored off the shelf, compiled FLOPs
      best["score"], flops = search.evaluate(model_dir, reduce, batches)
      if "none@compiled" not in costs:
        costs["none@compiled"] = search.evaluate(model_dir, ReduceConfig(),
                                                 batches)[1]
      best["flop_ratio"] = flops / costs["none@compiled"]
  best["reached"] = best["flop_ratio"] <= target + REACH_TOLERANCE
  return best


def table(rows: list[dict], references: dict[str, float]) -> str:
  lines = [f"{'method':<11}{'point':>6}{'trained':>8}{'VQA score':>10}"
           f"{'95% CI':>15}{'FLOPs':>7}{'speedup':>8}  target recall "
           "/ background share per layer"]
  for r in rows:
    recall = " ".join(f"{100 * l['target_recall']:.0f}/"
                      f"{100 * l['background_share']:.0f}"
                      for l in r.get("per_layer", []))
    lo, hi = r["ci95"]
    at = r["point"] + ("" if r["reached"] else "*")
    lines.append(
        f"{r['method']:<11}{at:>6}{'yes' if r['trained'] else '':>8}"
        f"{100 * r['vqa_score']:>9.1f}%{f'[{100 * lo:.1f}, {100 * hi:.1f}]':>15}"
        f"{r['flop_ratio']:>7.3f}{r['speedup']:>7.2f}x  {recall}")
  if not all(r["reached"] for r in rows):
    lines.append("* out of the method's reach on this model: its cheapest "
                 "setting, at the FLOP ratio shown")
  for name, value in references.items():
    lines.append(f"{name + ' (demo train split)':<45}{100 * value:>6.1f}%")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--lab", default="grid4", choices=sorted(LABS))
  parser.add_argument("--root", default="runs/demo")
  parser.add_argument("--model_dir", default="",
                      help="another model of the lab's data (default: the "
                      "lab's shipped one)")
  args = parser.parse_args(argv)
  xla_cpu.apply_fast_defaults()
  lab = LABS[args.lab]
  root = pathlib.Path(args.root) / args.lab
  model_dir = pathlib.Path(args.model_dir or lab.model_dir)
  if not (model_dir / saved.CONFIG_FILE).exists():
    raise SystemExit(
        f"{model_dir} holds no model: the {args.lab} laboratory's shipped "
        "model is trained by its recipe (pumer_jax/configs/shapes.py, "
        "vilt_recipe); pass --model_dir to use another.")
  start = time.perf_counter()
  config = demo_config(lab, root)

  print(f"[demo] 1/5 shapes_vqa ({args.lab}) -> {root / 'data'}")
  builder = loaders.prepared_builder(config)
  print("[demo] 2/5 searching operating points on the validation split")
  weights = saved.weights_digest(model_dir)  # names what is cached
  points = operating_points(config, model_dir, weights, root)
  settings = {"none": tradeoff.Setting(model_dir, ReduceConfig(), "none")}
  for key, best in points.items():
    reduce = ReduceConfig.from_mapping(best["reduce"])
    seen = any(s.reduce == reduce for s in settings.values())
    if best["score"] is not None and not seen:  # a lighter point's again
      method, at = key.split("@")
      settings[key] = tradeoff.Setting(model_dir, reduce, method, at)

  point = f"{TRAIN_POINT:.2f}"
  trainable = [k for k in points if k.endswith("@" + point)]
  print(f"[demo] 3/5 distilling at the {point} point, "
        f"{DISTILL['total_steps']} steps each: "
        + ", ".join(k.split("@")[0] for k in trainable))
  for key in trainable:
    reduce = ReduceConfig.from_mapping(points[key]["reduce"])
    trained = finetune.distilled_run(
        config, model_dir, weights, reduce, root,
        steps=DISTILL["total_steps"], lr=DISTILL["lr"],
        warmup_steps=DISTILL["warmup_steps"])
    settings[f"{key}+trained"] = tradeoff.Setting(
        trained, reduce, reduce.method, point, trained=True)

  print("[demo] 4/5 evaluating on the test split")
  batches = loaders.eval_batches(config, "test")
  rows = tradeoff.compare(settings, batches,
                          records=tradeoff.recall_records(config, "test"))
  tradeoff.add_ratios(rows, "none")
  for row in rows:
    key = row["name"].removesuffix("+trained")
    row["reached"] = points[key]["reached"] if key in points else True
  references = text_only.text_only_scores(
      builder.as_data_source(split="train"),
      builder.as_data_source(split="test"))

  print("[demo] 5/5 table, plots")
  print("\n" + table(rows, references))
  summary = dict(lab=args.lab, model_dir=str(model_dir), config=lab.config,
                 split="test", device=str(jax.devices()[0].device_kind),
                 resamples=tradeoff.RESAMPLES, distill=DISTILL, rows=rows,
                 references=references,
                 minutes=(time.perf_counter() - start) / 60)
  (root / "demo_results.json").write_text(json.dumps(summary, indent=2) + "\n")
  report.plot_tradeoff(rows, root / "pareto.png",
                       f"shapes_vqa ({args.lab}) test split: VQA score vs "
                       "cost (95% bootstrap CIs)")
  # Every reducer off the shelf at the point, where it has a source map.
  shown = config.copy_and_resolve_references()
  shown.unlock()
  drawn = []
  for row in rows:
    if row["point"] == point and not row["trained"] and "per_layer" in row:
      shown.reducers[row["method"]] = row["reduce"]
      drawn.append(row["method"])
  shown.lock()
  visualize.draw(model_dir, shown, drawn, 6, root / "reductions.png")
  minutes = (time.perf_counter() - start) / 60
  print(f"\n[demo] done in {minutes:.1f} min: {root / 'demo_results.json'}, "
        f"{root / 'pareto.png'}, {root / 'reductions.png'}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
