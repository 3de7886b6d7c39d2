r"""EfficientVLM's compression chain in one benchmark run: teacher, distilled
student, pruned (sliced) student, and the pruned student with PuMer.

Per model (`pumer_jax.evaluate.tradeoff.compare`): the VQA score on
`--split` of the `--config`'s data with a 95% bootstrap interval, and its
paired difference from the teacher (same questions) with its interval;
compiled FLOPs and throughput of the trained models, timed in one process
in interleaved rounds at `--batch`, so their ratios share one machine
state; parameter counts from the checkpoints; the pruned model's
per-module split from its `pruning_report.json`.

  python benchmarks/efficientvlm.py --name vilt_shapes \
      --config configs/vilt_shapes.py:pretrain \
      --teacher checkpoints/vilt_shapes --student runs/evlm/student/model \
      --pruned runs/evlm/final --out benchmarks/results
"""

from __future__ import annotations

import datetime
import json
import pathlib

import jax

from pumer_jax import entry
from pumer_jax.bench.measure import cpu_threads
from pumer_jax.compress.finalize import REPORT_FILE
from pumer_jax.data import loaders
from pumer_jax.evaluate import tradeoff
from pumer_jax.models import ReduceConfig, param_count, saved


def parameter_count(model_dir: pathlib.Path) -> int:
  _, variables = saved.load_model(model_dir)
  return param_count(variables)


def main(argv=None) -> None:
  parser = entry.script_parser(__doc__.split("\n\n")[0])
  parser.add_argument("--name", required=True,
                      help="names the output files: efficientvlm_NAME_...")
  parser.add_argument("--split", default="test")
  parser.add_argument("--teacher", required=True)
  parser.add_argument("--student", required=True)
  parser.add_argument("--pruned", required=True)
  parser.add_argument("--pumer_layers", default="1",
                      help="PuMer's reduce layers on the pruned student")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--min_seconds", type=float, default=4.0)
  parser.add_argument("--out", default="benchmarks/results")
  args = parser.parse_args(argv)
  entry.script_setup()
  config = entry.script_config(args)

  pumer = ReduceConfig(method="pumer", prune_ratio=0.2, image_merge_ratio=0.2,
                       text_merge_ratio=0.2, layers=tuple(
                           int(x) for x in args.pumer_layers.split(",")))
  none = ReduceConfig()
  settings = {
      "teacher": tradeoff.Setting(args.teacher, none, "teacher"),
      "student": tradeoff.Setting(args.student, none, "student"),
      "pruned": tradeoff.Setting(args.pruned, none, "pruned"),
      "pruned + pumer": tradeoff.Setting(args.pruned, pumer, "pruned"),
  }
  batches = loaders.eval_batches(config, args.split)
  timing = {k: v[:args.batch] for k, v in next(iter(batches())).items()}
  rows = tradeoff.compare(settings, batches, timing_batch=timing,
                          min_seconds=args.min_seconds)
  tradeoff.add_ratios(rows, "teacher")
  params = {k: parameter_count(pathlib.Path(s.model))
            for k, s in settings.items()}
  for row in rows:
    row["model"] = row.pop("name")
    row["parameters"] = params[row["model"]]
    row["parameters_vs_teacher"] = row["parameters"] / params["teacher"]
    row["gflops_per_example"] = row["flops_per_example"] / 1e9
    row["flops_vs_teacher"] = row["flop_ratio"]
    row["speedup_vs_teacher"] = row["speedup"]
    row["vs_teacher"] = row.pop("vs_reference")
    row["vs_teacher_ci95"] = row.pop("vs_reference_ci95")
  teacher = rows[0]
  device = jax.devices()[0]
  pruning = json.loads((pathlib.Path(args.pruned) / REPORT_FILE).read_text())
  out = dict(
      created=datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      device=dict(platform=device.platform, kind=device.device_kind,
                  host_cpu_threads=cpu_threads()),
      dtype="float32", config=args.config, split=args.split,
      batch=args.batch, rows=rows, modality_split=pruning["modality_split"],
      prunable_sparsity=pruning["prunable_sparsity"],
      total_sparsity=pruning["total_sparsity"],
      pruned_sizes=pruning["pruned_sizes"])
  lines = ["| model | VQA score [95% CI] | vs teacher [95% CI] | params "
           "| vs T | GFLOP/ex | vs T | ex/s | speedup |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lo, hi = r["ci95"]
    dlo, dhi = r["vs_teacher_ci95"]
    lines.append(
        f"| {r['model']} | {100 * r['vqa_score']:.1f} [{100 * lo:.1f}, "
        f"{100 * hi:.1f}] | {100 * r['vs_teacher']:+.1f} [{100 * dlo:+.1f}, "
        f"{100 * dhi:+.1f}] | {r['parameters']:,} "
        f"| {r['parameters_vs_teacher']:.3f} | {r['gflops_per_example']:.4f} "
        f"| {r['flops_vs_teacher']:.3f} | {r['examples_per_s']:.1f} "
        f"| {r['speedup_vs_teacher']:.2f}x |")
  table = "\n".join(lines)
  split = ("prunable sparsity by modality: " + ", ".join(
      f"{k} {v['sparsity']:.3f}" for k, v in pruning["modality_split"].items())
      + f" (all prunable {pruning['prunable_sparsity']:.3f}; of all "
      f"parameters {pruning['total_sparsity']:.3f})")
  print(table)
  print(split)
  platform = out["device"]["platform"]
  stem = f"efficientvlm_{args.name}_{platform}_{out['dtype']}"
  path = pathlib.Path(args.out) / f"{stem}.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(out, indent=2) + "\n")
  (path.parent / f"{stem}.md").write_text(
      f"# EfficientVLM on {args.name}\n\n"
      f"Scores: {teacher['examples']} {args.split} questions of "
      f"`{args.config}`, "
      "95% bootstrap intervals over questions, differences paired with the "
      f"teacher. Speed: the trained models at batch {args.batch}, "
      f"{out['device']['platform']} {out['dtype']}, timed in one process in "
      "interleaved rounds; "
      f"{out['created']}.\n\n{table}\n\n{split}\n")
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
