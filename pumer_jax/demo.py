"""`make demo`: the accuracy/cost trade-off of every reducer, on a laptop CPU.

Starts from the shipped `checkpoints/vilt_shapes` (a tiny ViLT that reads
the image) on the embedded `shapes_vqa` dataset:

1. Generates the dataset (once; no download).
2. Searches each off-the-shelf reducer's settings (PuMer, ToMe, SmRes) on
   the validation split for three operating points, compiled FLOP ratios
   of at most 0.80, 0.65 and 0.50 of the unreduced model (`search.py`).
3. Fine-tunes PuMer, ToMe and DynamicViT at the 0.50 point for a short
   schedule, each distilled from the unreduced model.
4. Evaluates everything on the test split: VQA score with a 95% bootstrap
   interval, compiled FLOP ratio, speedup (all timed in this process),
   tokens per layer, and target recall / background share per reduction
   layer (`evaluate/target_recall.py`).
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
from absl import logging

from pumer_jax import search, visualize, xla_cpu
from pumer_jax.configs.base import load_config
from pumer_jax.data import loaders
from pumer_jax.evaluate import report, text_only, tradeoff
from pumer_jax.models import saved
from pumer_jax.models.inputs import model_inputs
from pumer_jax.reduce import ReduceConfig
from pumer_jax.train import finetune

ROOT = pathlib.Path(__file__).parent.parent
# The checkpoint's last training stage: its data (validation and test are
# the same for both stages); distill_config replaces the schedule.
CONFIG = str(ROOT / "configs" / "vilt_shapes.py") + ":pretrain,stage=2"
MODEL_DIR = ROOT / "checkpoints" / "vilt_shapes"
TARGETS = (0.80, 0.65, 0.50)
TRAIN_POINT = 0.50
DEMO_TRAIN_EXAMPLES = 4000  # the first 4000 of the checkpoint's train split
DISTILL = dict(total_steps=100, lr=1e-4, warmup_steps=10)
SEARCHED = ("pumer", "tome", "smres")
# As DynamicViT's reference, never before the first block: the predictor
# scores what a block has made of the tokens.
DYNAMICVIT_LAYERS = ((1, 2),)
DYNAMICVIT_RATIOS = ((0.5, 0.25), (0.4, 0.2), (0.3, 0.15), (0.2, 0.1),
                     (0.15, 0.08), (0.1, 0.05))


def demo_config(root: pathlib.Path):
  config = load_config(CONFIG)
  config.unlock()
  config.data.data_dir = str(root / "data")
  config.data.builder_config.num_train = DEMO_TRAIN_EXAMPLES
  config.progress = False
  config.lock()
  return config


def search_options(depth: int) -> dict[str, list[ReduceConfig] | None]:
  """The demo's search grids (smaller than `search.candidates`' defaults)."""
  runs = [tuple(range(a, depth - 1)) for a in range(depth - 2)]
  runs += [tuple(range(depth - 2))]
  return {
      "pumer": [ReduceConfig(method="pumer", layers=layers, prune_ratio=p,
                             image_merge_ratio=m, text_merge_ratio=0.2)
                for layers in runs for p in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
                for m in (0.1, 0.2, 0.3)],
      "tome": [ReduceConfig(method="tome", layers=tuple(range(a, depth)),
                            tome_r=r)
               for a in (0, 1) for r in range(1, 25)],
      "smres": None,  # search.candidates: every patch-multiple resolution
  }


def cache_key(*parts: str) -> str:
  """8 hex digits naming a cached result by everything it depends on."""
  return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:8]


def operating_points(config, model_dir, weights: str, root
                     ) -> dict[str, dict]:
  """{"method@target": best row} from the search on validation, cached in a
  file named by the model's `weights` digest, the data and the search grids
  (another model or data searches anew, beside)."""
  batches = loaders.eval_batches(config, "validation")
  options = search_options(
      finetune.build_model_config(config).num_hidden_layers)
  path = root / "operating_points_{}.json".format(cache_key(
      weights, config.data.to_json(sort_keys=True),
      repr(options), repr(TARGETS)))
  points = json.loads(path.read_text()) if path.exists() else {}
  costs = {}  # shared: each schedule is costed once for all targets
  for method in SEARCHED:
    for target in TARGETS:
      key = f"{method}@{target:.2f}"
      if key in points:
        continue
      try:
        rows = search.search(model_dir, batches, method, target, top=2,
                             options=options[method], progress=False,
                             cost_cache=costs)
        points[key] = rows[0]
      except ValueError as error:  # no setting reaches the budget
        points[key] = {"error": str(error)}
      path.write_text(json.dumps(points, indent=2) + "\n")
      best = points[key]
      print(f"[demo]   {key}: " + (best["error"] if "error" in best else
                                    f"val {100 * best['score']:.1f}% at "
                                    f"FLOP ratio {best['flop_ratio']:.3f}"))
  return points


def dynamicvit_setting(config, model_dir, target: float) -> ReduceConfig:
  """DynamicViT's layers and keep ratios from a small grid: those whose
  FLOP ratio (XLA's cost analysis, predictors untrained) is nearest
  `target`."""
  base, variables = saved.load_model(model_dir)
  probe = {k: v[:8] for k, v in
           next(iter(loaders.eval_batches(config, "validation")())).items()}
  full = search.lowered_flops(base, variables["params"], probe)

  def ratio(reduce: ReduceConfig) -> float:
    model = type(base)(dataclasses.replace(base.config, reduce=reduce))
    params = jax.eval_shape(lambda: model.init(
        jax.random.PRNGKey(0), **model_inputs(probe)))["params"]
    return search.lowered_flops(model, params, probe) / full

  costs = {}
  for layers in DYNAMICVIT_LAYERS:
    for keep in DYNAMICVIT_RATIOS:
      reduce = ReduceConfig(method="dynamicvit", layers=layers,
                            keep_ratios=keep)
      try:
        costs[reduce] = ratio(reduce)
      except ValueError:  # keeps no patch on this model
        continue
  return min(costs, key=lambda r: abs(costs[r] - target))


def train(config, model_dir, weights: str, reduce: ReduceConfig, method: str,
          root: pathlib.Path) -> pathlib.Path:
  """A short distillation from the unreduced model, in a workdir named by
  its config and the model's `weights` digest (a changed setting or model trains
  anew, beside; a finished one is reused, an interrupted one resumed)."""
  c = config.copy_and_resolve_references()
  c.unlock()
  c.reduce = dataclasses.asdict(reduce)
  c.init_from = str(model_dir)
  c.distill.teacher = str(model_dir)
  c.total_steps = DISTILL["total_steps"]
  c.checkpoint_every = DISTILL["total_steps"]
  c.optim.lr = DISTILL["lr"]
  c.optim.warmup_steps = DISTILL["warmup_steps"]
  c.stop_at = 0
  c.lock()
  digest = cache_key(c.to_json(sort_keys=True), weights)
  workdir = root / f"trained_{method}_{digest}"
  if not (workdir / "model").exists():
    finetune.train_and_evaluate(c, workdir)
  return workdir / "model"


def table(rows: list[dict], references: dict[str, float]) -> str:
  lines = [f"{'method':<11}{'point':>6}{'trained':>8}{'VQA score':>10}"
           f"{'95% CI':>15}{'FLOPs':>7}{'speedup':>8}  target recall "
           "/ background share per layer"]
  for r in rows:
    recall = " ".join(f"{100 * l['target_recall']:.0f}/"
                      f"{100 * l['background_share']:.0f}"
                      for l in r.get("per_layer", []))
    lo, hi = r["ci95"]
    lines.append(
        f"{r['method']:<11}{r['point']:>6}{'yes' if r['trained'] else '':>8}"
        f"{100 * r['vqa_score']:>9.1f}%{f'[{100 * lo:.1f}, {100 * hi:.1f}]':>15}"
        f"{r['flop_ratio']:>7.3f}{r['speedup']:>7.2f}x  {recall}")
  for name, value in references.items():
    lines.append(f"{name + ' (demo train split)':<45}{100 * value:>6.1f}%")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", default="runs/demo")
  parser.add_argument("--model_dir", default=str(MODEL_DIR))
  args = parser.parse_args(argv)
  xla_cpu.apply_fast_defaults()
  root, model_dir = pathlib.Path(args.root), pathlib.Path(args.model_dir)
  logging.set_verbosity(logging.WARNING)
  start = time.perf_counter()
  config = demo_config(root)

  print(f"[demo] 1/5 shapes_vqa -> {root / 'data'}")
  builder = loaders.prepared_builder(config)
  print("[demo] 2/5 searching operating points on the validation split")
  weights = saved.weights_digest(model_dir)  # names what is cached
  points = operating_points(config, model_dir, weights, root)
  settings = {}  # name -> (model dir, reduce, method, point, trained)
  settings["none"] = (model_dir, ReduceConfig(), "none", "1.00", False)
  for key, best in points.items():
    if "error" not in best:
      method, point = key.split("@")
      settings[key] = (model_dir, ReduceConfig.from_mapping(best["reduce"]),
                       method, point, False)

  print(f"[demo] 3/5 distilling at the {TRAIN_POINT:.2f} point, "
        f"{DISTILL['total_steps']} steps each")
  point = f"{TRAIN_POINT:.2f}"
  pumer = settings[f"pumer@{point}"][1]
  for method, reduce in (("pumer", pumer),
                         ("tome", settings[f"tome@{point}"][1]),
                         ("dynamicvit", dynamicvit_setting(
                             config, model_dir, TRAIN_POINT))):
    trained = train(config, model_dir, weights, reduce, method, root)
    settings[f"{method}@{point}+trained"] = (trained, reduce, method, point,
                                             True)

  print("[demo] 4/5 evaluating on the test split")
  batches = loaders.eval_batches(config, "test")
  rows = []
  for name, (source, reduce, method, pt, trained) in settings.items():
    row = tradeoff.evaluate_setting(source, config, reduce, batches, "test")
    rows.append(dict(name=name, method=method, point=pt, trained=trained,
                     reduce=dataclasses.asdict(reduce), **row))
  measured = tradeoff.measure_cost_and_speed(
      {n: (s[0], s[1]) for n, s in settings.items()}, next(iter(batches())))
  for row in rows:
    row.update(measured[row["name"]])
    row["flop_ratio"] = (row["flops_per_example"]
                         / measured["none"]["flops_per_example"])
    row["speedup"] = (row["examples_per_s"]
                      / measured["none"]["examples_per_s"])
  references = text_only.text_only_scores(
      builder.as_data_source(split="train"),
      builder.as_data_source(split="test"))

  print("[demo] 5/5 table, plots")
  print("\n" + table(rows, references))
  summary = dict(model_dir=str(model_dir), config=CONFIG, split="test",
                 device=str(jax.devices()[0].device_kind),
                 resamples=tradeoff.RESAMPLES, distill=DISTILL, rows=rows,
                 references=references,
                 minutes=(time.perf_counter() - start) / 60)
  (root / "demo_results.json").write_text(json.dumps(summary, indent=2) + "\n")
  report.plot_tradeoff(rows, root / "pareto.png",
                       "shapes_vqa test split: VQA score vs cost "
                       "(95% bootstrap CIs)")
  shown = config.copy_and_resolve_references()
  shown.unlock()
  for method in ("pumer", "tome"):
    shown.reducers[method] = dataclasses.asdict(settings[f"{method}@{point}"][1])
  shown.lock()
  visualize.draw(model_dir, shown, ["pumer", "tome"], 6,
                 root / "reductions.png")
  minutes = (time.perf_counter() - start) / 60
  print(f"\n[demo] done in {minutes:.1f} min: {root / 'demo_results.json'}, "
        f"{root / 'pareto.png'}, {root / 'reductions.png'}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
