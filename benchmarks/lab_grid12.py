r"""The papers' operating points on the second laboratory (ViLT-B/32's geometry).

On `checkpoints/vilt_shapes_grid12` (12 layers, 145 image tokens, objects
spanning patches), side by side on the test split, off the shelf and after
the same short distillation from the unreduced model:

- PuMer as the paper configures ViLT VQA (layers 2, 5, 8; p=0.1, m=0.3,
  t=0.2; official semantics, scores from head 0) and SNLI-VE (layers 2, 4,
  6, 8; heads averaged), and the sized variant of each;
- ToMe at the constant r whose compiled FLOP ratio is nearest PuMer VQA's,
  and at r=16 (its ViT-B/16 setting, capped where tokens run out);
- DynamicViT before layers 3, 6, 9 with its reference keep ratios 0.7,
  0.49, 0.343, and at the rho (rho, rho^2, rho^3) nearest PuMer VQA's FLOPs
  (trained only: its predictors need training);
- SmRes at the two resolutions that bracket PuMer VQA's FLOPs;
- EViT at its reference layers 3, 6, 9 with the keep rate nearest PuMer
  VQA's FLOPs.

Each row: VQA score with a 95% interval, the paired difference from PuMer
VQA (same questions), compiled FLOP ratio, speedup (all settings timed in
one process, interleaved rounds), target recall and background share per
reduction layer. Writes OUT.json, OUT.md, OUT_pareto.png and
OUT_reductions.png.

  python benchmarks/lab_grid12.py --config configs/vilt_shapes.py:lab=grid12,pretrain \
      --model_dir checkpoints/vilt_shapes_grid12 --runs runs/lab_grid12 \
      --out benchmarks/results/lab_grid12_paper
"""

from __future__ import annotations

import json
import pathlib

import jax

from pumer_jax import entry, search, visualize
from pumer_jax.data import loaders
from pumer_jax.evaluate import report, tradeoff
from pumer_jax.models import saved
from pumer_jax.reduce import ReduceConfig
from pumer_jax.train import finetune

PUMER = dict(prune_ratio=0.1, image_merge_ratio=0.3, text_merge_ratio=0.2)
PAPER = {
    "pumer vqa": ReduceConfig(method="pumer", layers=(2, 5, 8),
                              score_heads="first", **PUMER),
    "pumer ve": ReduceConfig(method="pumer", layers=(2, 4, 6, 8), **PUMER),
    "tome r16": ReduceConfig(method="tome", tome_r=16),
    "dynamicvit paper": ReduceConfig(method="dynamicvit", layers=(3, 6, 9),
                                     keep_ratios=(0.7, 0.49, 0.343)),
}
REFERENCE = "pumer vqa"


def nearest(model_dir, batches, method: str, target: float, options,
            costs) -> ReduceConfig:
  """The option whose compiled FLOP ratio is nearest `target`."""
  row = search.search(model_dir, batches, method, target, top=1,
                      options=options, rank="nearest", progress=False,
                      cost_cache=costs)[0]
  return ReduceConfig.from_mapping(row["reduce"])


def bracketing(model_dir, batches, target: float, options, costs):
  """The SmRes settings just above and just below `target`."""
  rows = search.search(model_dir, batches, "smres", target, top=len(options),
                       options=options, rank="nearest", progress=False,
                       cost_cache=costs)
  above = [r for r in rows if r["flop_ratio"] > target]
  below = [r for r in rows if r["flop_ratio"] <= target]
  return [ReduceConfig.from_mapping(r[0]["reduce"])
          for r in (above, below) if r]


def settings_for(model_dir, config) -> dict[str, ReduceConfig]:
  """Every off-the-shelf and cost-matched setting (module docstring)."""
  batches = loaders.eval_batches(config, "validation")
  costs = {}
  ref = search.search(model_dir, batches, "pumer", 1.0, top=1,
                      options=[PAPER[REFERENCE]], progress=False,
                      cost_cache=costs)[0]["flop_ratio"]
  out = dict(PAPER)
  for name in ("pumer vqa", "pumer ve"):
    out[f"{name} sized"] = PAPER[name].replace(semantics="sized",
                                               clamp_merge=True)
  out["tome matched"] = nearest(
      model_dir, batches, "tome", ref,
      [ReduceConfig(method="tome", tome_r=r) for r in range(1, 33)], costs)
  out["dynamicvit matched"] = nearest(
      model_dir, batches, "dynamicvit", ref,
      [ReduceConfig(method="dynamicvit", layers=(3, 6, 9),
                    keep_ratios=(k / 100, (k / 100) ** 2, (k / 100) ** 3))
       for k in range(95, 20, -5)], costs)
  out["evit matched"] = nearest(
      model_dir, batches, "evit", ref,
      [ReduceConfig(method="evit", layers=(3, 6, 9), keep_rate=k / 100)
       for k in range(95, 4, -5)], costs)
  smres = search.candidates("smres", saved.load_model(model_dir)[0].config)
  for i, reduce in enumerate(bracketing(model_dir, batches, ref, smres,
                                        costs)):
    out[f"smres {'above' if i == 0 else 'below'}"] = reduce
  return out


def main(argv=None) -> list[dict]:
  parser = entry.script_parser(__doc__.split("\n\n")[0])
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--runs", default="runs/lab_grid12")
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--lr", type=float, default=1e-4)
  parser.add_argument("--out", required=True,
                      help="OUT.json, OUT.md, OUT_pareto.png, "
                      "OUT_reductions.png")
  args = parser.parse_args(argv)
  entry.script_setup()
  config = entry.script_config(args)
  model_dir = pathlib.Path(args.model_dir)
  teacher = saved.weights_digest(model_dir)
  chosen = settings_for(model_dir, config)
  settings = {"none": tradeoff.Setting(model_dir, ReduceConfig(), "none")}
  for name, reduce in chosen.items():
    if not reduce.param_stages():
      settings[name] = tradeoff.Setting(model_dir, reduce, reduce.method,
                                        name)
  for name, reduce in chosen.items():
    print(f"[lab_grid12] distilling {name}: {reduce.describe()}", flush=True)
    trained = finetune.distilled_run(
        config, model_dir, teacher, reduce, args.runs, steps=args.steps,
        lr=args.lr, warmup_steps=max(1, args.steps // 10))
    settings[f"{name} +trained"] = tradeoff.Setting(
        trained, reduce, reduce.method, name, trained=True)
  pairs = [(f"{REFERENCE}{t}", f"{name}{t}") for t in ("", " +trained")
           for name in chosen if name != REFERENCE
           and f"{name}{t}" in settings and f"{REFERENCE}{t}" in settings]
  print("[lab_grid12] evaluating on the test split", flush=True)
  rows = tradeoff.compare(settings, loaders.eval_batches(config, "test"),
                          records=tradeoff.recall_records(config, "test"),
                          differences=pairs)
  tradeoff.add_ratios(rows, "none")
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  summary = dict(model_dir=str(model_dir), config=args.config, split="test",
                 device=str(jax.devices()[0].device_kind),
                 distill=dict(steps=args.steps, lr=args.lr), rows=rows)
  out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
  table = markdown(summary)
  out.with_suffix(".md").write_text(table)
  print(table)
  plotted = [r for r in rows if "flop_ratio" in r]
  report.plot_tradeoff(plotted, out.parent / f"{out.name}_pareto.png",
                       "shapes_vqa grid12 (145 image tokens) test split: the "
                       "papers' operating points")
  shown = config.copy_and_resolve_references()
  shown.unlock()
  drawn = []
  for name in ("pumer vqa", "tome matched", "evit matched"):
    shown.reducers[chosen[name].method] = chosen[name].to_dict()
    drawn.append(chosen[name].method)
  shown.lock()
  visualize.draw(model_dir, shown, drawn, 4,
                 out.parent / f"{out.name}_reductions.png")
  return rows


def markdown(summary) -> str:
  lines = [f"# The papers' operating points on `{summary['model_dir']}`", "",
           f"Config `{summary['config']}`, test split, 95% bootstrap "
           "intervals; difference rows are paired (same questions). Trained: "
           f"{summary['distill']['steps']} steps of distillation from the "
           f"unreduced model at lr {summary['distill']['lr']}. Device: "
           f"{summary['device']}.", "",
           "| setting | trained | reduce | FLOP ratio | speedup | VQA score | "
           "95% CI | target recall / background share per layer |",
           "|---|---|---|---|---|---|---|---|"]
  for r in summary["rows"]:
    lo, hi = r["ci95"]
    if "reduce" in r:
      reduce = ReduceConfig.from_mapping(r["reduce"]).describe()
      score = f"{100 * r['vqa_score']:.1f}"
      cost = f"{r['flop_ratio']:.3f} | {r.get('speedup', 0):.2f}x"
    else:
      reduce, score, cost = "paired difference", \
          f"{100 * r['vqa_score']:+.1f}", " | "
    recall = " ".join(f"{100 * l['target_recall']:.0f}/"
                      f"{100 * l['background_share']:.0f}"
                      for l in r.get("per_layer", []))
    lines.append(f"| {r['name']} | {'yes' if r['trained'] else ''} | "
                 f"{reduce} | {cost} | {score} | [{100 * lo:.1f}, "
                 f"{100 * hi:.1f}] | {recall} |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()
