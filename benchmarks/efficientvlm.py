r"""EfficientVLM's compression chain in one benchmark run: teacher, distilled
student, pruned (sliced) student, and the pruned student with PuMer.

Per model: the VQA score on `--split` of the `--config`'s data with a 95%
bootstrap interval, and its paired difference from the teacher (same
questions) with its interval; throughput and FLOPs from `pumer_jax.bench`
on random weights of each model's architecture (throughput needs no
trained weights); parameter counts from the checkpoints; the pruned
model's per-module split from its `pruning_report.json`. All models are
timed in one process, so their ratios share one machine state.

  python benchmarks/efficientvlm.py --name vilt_shapes \
      --config configs/vilt_shapes.py:pretrain,stage=2 \
      --teacher checkpoints/vilt_shapes --student runs/evlm/student/model \
      --pruned runs/evlm/final --out benchmarks/results
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib



from pumer_jax.bench import run_benchmark
from pumer_jax.compress.finalize import REPORT_FILE
from pumer_jax.configs.base import load_config
from pumer_jax.data import loaders
from pumer_jax.evaluate.tradeoff import bootstrap_ci, question_scores
from pumer_jax.models import ReduceConfig, param_count, saved


def parameter_count(model_dir: pathlib.Path) -> int:
  _, variables = saved.load_model(model_dir)
  return param_count(variables)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--name", required=True,
                      help="names the output files: efficientvlm_NAME_...")
  parser.add_argument("--config", required=True,
                      help="the config whose data the models are scored on")
  parser.add_argument("--split", default="test")
  parser.add_argument("--teacher", required=True)
  parser.add_argument("--student", required=True)
  parser.add_argument("--pruned", required=True)
  parser.add_argument("--pumer_layers", default="1",
                      help="PuMer's reduce layers on the pruned student")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--min_seconds", type=float, default=2.0)
  parser.add_argument("--out", default="benchmarks/results")
  args = parser.parse_args(argv)

  pumer = ReduceConfig(method="pumer", prune_ratio=0.2, image_merge_ratio=0.2,
                       text_merge_ratio=0.2, layers=tuple(
                           int(x) for x in args.pumer_layers.split(",")))
  runs = [("teacher", args.teacher, {"none": ReduceConfig()}),
          ("student", args.student, {"none": ReduceConfig()}),
          ("pruned", args.pruned, {"none": ReduceConfig(), "pumer": pumer})]
  config = load_config(args.config)
  text_len = config.data.text_len
  image_size = config.data.builder_config.image_size
  batches = loaders.eval_batches(config, args.split)
  rows, reports, scores = [], {}, []
  for name, directory, methods in runs:
    directory = pathlib.Path(directory)
    model, _ = saved.load_model(directory,
                                     reduce=ReduceConfig(method="none"))
    report = run_benchmark(
        model.config, methods, text_len, image_size,
        batch_start=args.batch, batch_step=args.batch, max_batch=args.batch,
        repeats=args.repeats, min_seconds=args.min_seconds, progress=False)
    reports[name] = report
    params = parameter_count(directory)
    for result in report["results"]:
      label = name if result["name"] == "none" else f"{name} + {result['name']}"
      got, _, _ = question_scores(directory, methods[result["name"]], batches)
      scores.append(got)
      rows.append(dict(model=label, parameters=params,
                       vqa_score=float(got.mean()), ci95=bootstrap_ci(got),
                       examples=int(len(got)),
                       gflops_per_example=result["flops_per_example"] / 1e9,
                       examples_per_s=result["throughput"],
                       tokens_per_layer=result["tokens_per_layer"]))
  teacher = rows[0]
  for row, got in zip(rows, scores):
    row["vs_teacher"] = float((got - scores[0]).mean())
    row["vs_teacher_ci95"] = bootstrap_ci(got - scores[0])
    row["parameters_vs_teacher"] = row["parameters"] / teacher["parameters"]
    row["flops_vs_teacher"] = (row["gflops_per_example"]
                               / teacher["gflops_per_example"])
    row["speedup_vs_teacher"] = (row["examples_per_s"]
                                 / teacher["examples_per_s"])
  pruning = json.loads((pathlib.Path(args.pruned) / REPORT_FILE).read_text())
  out = dict(
      created=datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      device=reports["teacher"]["device"], dtype=reports["teacher"]["dtype"],
      config=args.config, split=args.split,
      batch=args.batch, text_len=text_len, image_size=image_size,
      rows=rows, modality_split=pruning["modality_split"],
      prunable_sparsity=pruning["prunable_sparsity"],
      total_sparsity=pruning["total_sparsity"],
      pruned_sizes=pruning["pruned_sizes"],
      bench_reports=reports)
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
      f"Scores: {len(scores[0])} {args.split} questions of `{args.config}`, "
      "95% bootstrap intervals over questions, differences paired with the "
      f"teacher. Speed: batch {args.batch}, {out['device']['platform']} "
      f"{out['dtype']}, all models timed in one process; "
      f"{out['created']}.\n\n{table}\n\n{split}\n")
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
