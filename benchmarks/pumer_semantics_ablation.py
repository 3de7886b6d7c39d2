r"""PuMer's two semantics at equal cost: the reference code's vs the sized variant.

On a shipped shapes_vqa model (ViLT or METER), for three operating points
(PuMer schedules whose token-count FLOP proxy is closest to 0.80, 0.65 and
0.50 of the unreduced model; `--targets` sets others), evaluates
`reduce.semantics="official"` and `"sized"` on the test split, off the
shelf and, with --train, after the same short distillation from the
unreduced model (train.py, one run per point, semantics and model weights,
skipped where its model exists); points that coincide are run once. Reports each VQA
score with a 95% bootstrap interval over the test questions, the paired
difference official - sized with its own interval, and the compiled FLOP
ratio. Each run puts its model's report under `--name` in `--out`.{json,md}
(benchmarks/results/pumer_semantics_ablation), keeping the others.

  python benchmarks/pumer_semantics_ablation.py \
      --config configs/vilt_shapes.py:pretrain,stage=2 \
      --model_dir checkpoints/vilt_shapes --runs runs/semantics_ablation_vilt \
      --train --name vilt_shapes
  python benchmarks/pumer_semantics_ablation.py \
      --config configs/meter_vqa.py:shapes,pretrain --targets 0.9,0.8,0.7 \
      --model_dir checkpoints/meter_shapes --runs runs/semantics_ablation_meter \
      --train --name meter_shapes
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

import jax

from pumer_jax.configs.base import load_config
from pumer_jax.data import loaders
from pumer_jax.evaluate.target_recall import recall_by_layer
from pumer_jax.evaluate.tradeoff import (
    RESAMPLES,
    SEED,
    bootstrap_ci,
    question_scores,
)
from pumer_jax.models import saved
from pumer_jax.reduce import ReduceConfig
from pumer_jax.search import reducible_depth

TARGETS = (0.80, 0.65, 0.50)
SEMANTICS = ("official", "sized")
# Candidate schedules: a contiguous run of PuMer layers, one ratio for p, m, t.
RATIOS = tuple(round(0.05 * k, 2) for k in range(1, 13))


def layer_sets(depth: int) -> list[tuple[int, ...]]:
  return [tuple(range(a, b)) for a in range(depth)
          for b in range(a + 1, depth + 1)]


def operating_point(model_config, image_len: int, text_len: int,
                    target: float) -> dict:
  """The candidate PuMer schedule whose FLOP proxy is nearest `target`
  (counts equal under both semantics, so both run the same schedule);
  `model_config` (ViLT's or METER's) says how its layers count tokens."""
  best = None
  for layers in layer_sets(reducible_depth(model_config)):
    for r in RATIOS:
      kw = dict(layers=layers, prune_ratio=r, image_merge_ratio=r,
                text_merge_ratio=r)
      counts = []
      try:
        for semantics in SEMANTICS:
          reduce = ReduceConfig(method="pumer", semantics=semantics,
                                clamp_merge=True, **kw)
          s = model_config.replace(reduce=reduce).schedule(image_len,
                                                           text_len)
          counts.append([(st.layer, st.image_out, st.text_out)
                         for st in s.steps])
      except ValueError:  # a count the sized semantics refuses
        continue
      if counts[0] != counts[1]:
        continue
      gap = abs(s.flops_proxy() - target)
      if best is None or gap < best[0]:
        best = (gap, kw, s.flops_proxy())
  return dict(best[1], flops_proxy=best[2])


def train_command(args, run_dir, kw, semantics) -> list[str]:
  """train.py: the short distillation from the unreduced model."""
  flag = lambda k, v: f"--config.{k}={v}"
  return [sys.executable, "train.py", f"--config={args.config_arg}",
          f"--workdir={run_dir}",
          flag("reduce.method", "pumer"),
          flag("reduce.semantics", semantics),
          flag("reduce.layers", "(" + ",".join(map(str, kw["layers"])) + ",)"),
          flag("reduce.prune_ratio", kw["prune_ratio"]),
          flag("reduce.image_merge_ratio", kw["image_merge_ratio"]),
          flag("reduce.text_merge_ratio", kw["text_merge_ratio"]),
          flag("reduce.clamp_merge", True),
          flag("init_from", args.model_dir),
          flag("distill.teacher", args.model_dir),
          flag("total_steps", args.steps),
          flag("stop_at", 0),  # the pretraining config may stop its own run
          flag("optim.lr", args.lr),
          flag("optim.warmup_steps", max(1, args.steps // 10)),
          flag("checkpoint_every", args.steps),
          flag("eval.methods", "pumer")]


def main(config, args):
  model_dir = pathlib.Path(args.model_dir)
  base, _ = saved.load_model(model_dir)
  teacher = saved.weights_digest(model_dir)
  c = base.config
  image_len = (c.image_size // c.patch_size) ** 2 + 1
  text_len = config.data.text_len
  batches = loaders.eval_batches(config, "test")
  full, full_flops, _ = question_scores(model_dir, ReduceConfig(), batches)
  rows = [dict(point="unreduced", semantics="-", trained=False,
               vqa_score=float(full.mean()), ci95=bootstrap_ci(full),
               flop_ratio=1.0, examples=int(len(full)))]
  seen = []
  for target in args.targets:
    kw = operating_point(c, image_len, text_len, target)
    proxy = kw.pop("flops_proxy")
    if kw in seen:  # the same schedule as a nearer target's
      continue
    seen.append(kw)
    for trained in ((False, True) if args.train else (False,)):
      per = {}
      for semantics in SEMANTICS:
        reduce = ReduceConfig(method="pumer", semantics=semantics,
                              clamp_merge=True, **kw)
        source = model_dir
        if trained:
          run = pathlib.Path(args.runs) / (  # a replaced model trains anew
              f"p{int(100 * target)}_{semantics}_{teacher[:8]}")
          if not (run / "model").exists():
            subprocess.run(train_command(args, run, kw, semantics), check=True)
          source = run / "model"
        values, flops, _ = question_scores(source, reduce, batches)
        per[semantics] = values
        rows.append(dict(
            point=f"{target:.2f}", semantics=semantics, trained=trained,
            schedule=dict(kw), flops_proxy=proxy,
            flop_ratio=flops / full_flops, vqa_score=float(values.mean()),
            ci95=bootstrap_ci(values), examples=int(len(values)),
            per_layer=recall_by_layer(source, config, reduce, "test")))
      diff = per["official"] - per["sized"]
      rows.append(dict(point=f"{target:.2f}", semantics="official - sized",
                       trained=trained, vqa_score=float(diff.mean()),
                       ci95=bootstrap_ci(diff), examples=int(len(diff))))
  report = dict(model_dir=str(model_dir), config=args.config_arg,
                split="test", resamples=RESAMPLES, seed=SEED,
                distill=dict(steps=args.steps, lr=args.lr) if args.train
                else None, device=str(jax.devices()[0].device_kind),
                rows=rows)
  print(markdown(report))
  write(pathlib.Path(args.out), args.name, report)


def write(out: pathlib.Path, name: str, report: dict) -> None:
  """Puts `report` under `name` in OUT.json (other models' reports kept)
  and rewrites OUT.md from all of them."""
  out.parent.mkdir(parents=True, exist_ok=True)
  path = out.with_suffix(".json")
  reports = json.loads(path.read_text()) if path.exists() else {}
  reports[name] = report
  path.write_text(json.dumps(reports, indent=2) + "\n")
  out.with_suffix(".md").write_text(
      "# PuMer semantics ablation: official (reference code) vs sized\n\n"
      + "\n".join(markdown(reports[k]) for k in sorted(reports)))


def markdown(report) -> str:
  lines = [
      f"## `{report['model_dir']}`",
      "",
      f"Config `{report['config']}`, "
      f"{report['split']} split; 95% bootstrap intervals over questions "
      f"({report['resamples']} resamples, seed {report['seed']}); the "
      "difference rows are paired (the same resampled questions). "
      + (f"Trained rows: {report['distill']['steps']} steps of distillation "
         f"from the unreduced model, lr {report['distill']['lr']}."
         if report["distill"] else "Off the shelf only."),
      "",
      "Target recall: the share of the question's objects' patches some "
      "token still holds; background share: the share of image tokens that "
      "hold background only (after each reduction layer, mean over "
      "questions; `pumer_jax/evaluate/target_recall.py`).",
      "",
      "| point | semantics | trained | schedule (layers, p=m=t) | FLOP ratio "
      "| VQA score | 95% CI | target recall per layer | background share "
      "per layer |",
      "|---|---|---|---|---|---|---|---|---|"]
  for r in report["rows"]:
    sched = r.get("schedule")
    sched = (f"{tuple(sched['layers'])}, {sched['prune_ratio']}"
             if sched else "")
    ratio = f"{r['flop_ratio']:.3f}" if "flop_ratio" in r else ""
    lo, hi = r["ci95"]
    layers = r.get("per_layer", [])
    recall = ", ".join(f"{100 * l['target_recall']:.0f}%" for l in layers)
    share = ", ".join(f"{100 * l['background_share']:.0f}%" for l in layers)
    lines.append(
        f"| {r['point']} | {r['semantics']} | {'yes' if r['trained'] else 'no'}"
        f" | {sched} | {ratio} | {100 * r['vqa_score']:.1f} | "
        f"[{100 * lo:.1f}, {100 * hi:.1f}] | {recall} | {share} |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", dest="config_arg", required=True)
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--runs", default="runs/semantics_ablation")
  parser.add_argument("--train", action="store_true")
  parser.add_argument(
      "--targets", type=lambda v: tuple(float(x) for x in v.split(",")),
      default=TARGETS, help="FLOP-proxy targets, e.g. 0.9,0.8,0.7 for METER,"
      " whose reducible fusion blocks are a small part of its cost")
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--lr", type=float, default=1e-4)
  parser.add_argument("--name", required=True,
                      help="the model's key in the output, e.g. vilt_shapes")
  parser.add_argument("--out",
                      default="benchmarks/results/pumer_semantics_ablation")
  args = parser.parse_args()
  main(load_config(args.config_arg), args)
