r"""PuMer's two semantics at equal cost: the reference code's vs the sized variant.

On a shipped shapes_vqa model (ViLT or METER), for three operating points
(the PuMer schedule whose compiled FLOP ratio is nearest 0.80, 0.65 and 0.50
of the unreduced model, `pumer_jax.search` ranking by cost; `--targets`
sets others), evaluates `reduce.semantics="official"` and `"sized"` on the
test split, off the shelf and, with --train, after the same short
distillation from the unreduced model (`finetune.distilled_run`, whose
workdir is named by the whole run config and the teacher's weights: a
change of steps, lr, schedule or model trains anew). Points that coincide
are run once. Reports each VQA score with a 95% bootstrap interval over the
test questions, the paired difference official - sized with its own
interval, the compiled FLOP ratio and target recall per reduction layer
(`pumer_jax.evaluate.tradeoff`). Each run puts its model's report under
`--name` in `--out`.{json,md}, keeping the others.

  python benchmarks/pumer_semantics_ablation.py \
      --config configs/vilt_shapes.py:pretrain \
      --model_dir checkpoints/vilt_shapes --runs runs/semantics_ablation_vilt \
      --train --name vilt_shapes
  python benchmarks/pumer_semantics_ablation.py \
      --config configs/meter_vqa.py:shapes,pretrain --targets 0.9,0.8,0.7 \
      --model_dir checkpoints/meter_shapes --runs runs/semantics_ablation_meter \
      --train --name meter_shapes
"""

from __future__ import annotations

import json
import pathlib

import jax

from pumer_jax import entry, search
from pumer_jax.data import loaders
from pumer_jax.evaluate import tradeoff
from pumer_jax.models import saved
from pumer_jax.reduce import ReduceConfig
from pumer_jax.train import finetune

TARGETS = (0.80, 0.65, 0.50)
SEMANTICS = ("official", "sized")
# Candidate schedules: a contiguous run of PuMer layers, one ratio for p, m, t.
RATIOS = tuple(round(0.05 * k, 2) for k in range(1, 13))


def candidates(model_config, text_len: int) -> list[ReduceConfig]:
  """Official-semantics schedules (p = m = t, contiguous layers) whose token
  counts are the same under the sized semantics, so both run one schedule."""
  depth = search.reducible_depth(model_config)
  hw = model_config.input_size or (model_config.image_size,) * 2
  image_len = (hw[0] // model_config.patch_size) * (
      hw[1] // model_config.patch_size) + 1
  out = []
  for a in range(depth):
    for b in range(a + 1, depth + 1):
      for r in RATIOS:
        kw = dict(layers=tuple(range(a, b)), prune_ratio=r,
                  image_merge_ratio=r, text_merge_ratio=r, clamp_merge=True)
        counts = []
        try:
          for semantics in SEMANTICS:
            reduce = ReduceConfig(method="pumer", semantics=semantics, **kw)
            s = model_config.replace(reduce=reduce).schedule(image_len,
                                                             text_len)
            counts.append([(st.layer, st.image_out, st.text_out)
                           for st in s.steps])
        except ValueError:  # a count the sized semantics refuses
          continue
        if counts[0] == counts[1] and counts[0]:
          out.append(ReduceConfig(method="pumer", semantics="official", **kw))
  return out


def main(argv=None) -> None:
  parser = entry.script_parser(__doc__.split("\n")[0])
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--runs", default="runs/semantics_ablation")
  parser.add_argument("--train", action="store_true")
  parser.add_argument(
      "--targets", type=lambda v: tuple(float(x) for x in v.split(",")),
      default=TARGETS, help="FLOP-ratio targets, e.g. 0.9,0.8,0.7 for METER,"
      " whose reducible fusion blocks are a small part of its cost")
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--lr", type=float, default=1e-4)
  parser.add_argument("--name", required=True,
                      help="the model's key in the output, e.g. vilt_shapes")
  parser.add_argument("--out",
                      default="benchmarks/results/pumer_semantics_ablation")
  args = parser.parse_args(argv)
  entry.script_setup()
  config = entry.script_config(args)
  model_dir = pathlib.Path(args.model_dir)
  teacher = saved.weights_digest(model_dir)
  model_config = saved.load_model(model_dir)[0].config
  options = candidates(model_config, config.data.text_len)
  validation = loaders.eval_batches(config, "validation")
  settings = {"unreduced": tradeoff.Setting(model_dir, ReduceConfig(), "-")}
  points, costs = [], {}
  for target in args.targets:
    best = search.search(model_dir, validation, "pumer", target, top=1,
                         options=options, rank="nearest", progress=False,
                         cost_cache=costs)[0]
    reduce = ReduceConfig.from_mapping(best["reduce"])
    if reduce in points:  # the same schedule as a nearer target's
      continue
    points.append(reduce)
    for trained in ((False, True) if args.train else (False,)):
      for semantics in SEMANTICS:
        this = reduce.replace(semantics=semantics)
        source = model_dir
        if trained:
          source = finetune.distilled_run(
              config, model_dir, teacher, this, args.runs, steps=args.steps,
              lr=args.lr, warmup_steps=max(1, args.steps // 10))
        settings[f"{target:.2f}/{semantics}/{trained}"] = tradeoff.Setting(
            source, this, semantics, f"{target:.2f}", trained)
  # official - sized at each point, off the shelf and trained.
  pairs = [(name, name.replace("/official/", "/sized/"))
           for name in settings if "/official/" in name]
  rows = tradeoff.compare(settings, loaders.eval_batches(config, "test"),
                          records=tradeoff.recall_records(config, "test"),
                          differences=pairs, min_seconds=0)
  tradeoff.add_ratios(rows, "unreduced")
  report = dict(model_dir=str(model_dir), config=args.config,
                split="test", resamples=tradeoff.RESAMPLES,
                seed=tradeoff.SEED,
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


def label(row) -> str:
  """A row's semantics column: its semantics, or the difference it is."""
  method = row.get("method", row.get("semantics"))  # older reports: semantics
  return "official - sized" if method == "difference" else method


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
    reduce = r.get("reduce") or r.get("schedule") or {}  # older: schedule
    sched = (f"{tuple(reduce['layers'])}, {reduce['prune_ratio']}"
             if "prune_ratio" in reduce else "")
    ratio = f"{r['flop_ratio']:.3f}" if "flop_ratio" in r else ""
    lo, hi = r["ci95"]
    layers = r.get("per_layer", [])
    recall = ", ".join(f"{100 * l['target_recall']:.0f}%" for l in layers)
    share = ", ".join(f"{100 * l['background_share']:.0f}%" for l in layers)
    lines.append(
        f"| {r['point']} | {label(r)} | {'yes' if r['trained'] else 'no'}"
        f" | {sched} | {ratio} | {100 * r['vqa_score']:.1f} | "
        f"[{100 * lo:.1f}, {100 * hi:.1f}] | {recall} | {share} |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()
