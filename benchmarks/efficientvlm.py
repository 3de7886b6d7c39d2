r"""EfficientVLM's compression chain in one benchmark run: teacher, distilled
student, pruned (sliced) student, and the pruned student with PuMer.

Throughput and FLOPs come from `pumer_jax.bench` on random weights of each
model's architecture (throughput needs no trained weights); parameter
counts from the checkpoints; the pruned model's per-module split from its
`pruning_report.json`. All models are timed in one process, so their ratios
share one machine state.

  python benchmarks/efficientvlm.py --teacher runs/evlm/teacher/model \
      --student runs/evlm/student/model --pruned ckpt/evlm_pruned \
      --config configs/vilt_shapes.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib


from pumer_jax.bench import run_benchmark
from pumer_jax.compress.finalize import REPORT_FILE
from pumer_jax.models import ReduceConfig, param_count, saved


def parameter_count(model_dir: pathlib.Path) -> int:
  _, variables = saved.load_model(model_dir)
  return param_count(variables)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--teacher", required=True)
  parser.add_argument("--student", required=True)
  parser.add_argument("--pruned", required=True)
  parser.add_argument("--text_len", type=int, default=16)
  parser.add_argument("--image_size", type=int, default=96)
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
  rows, reports = [], {}
  for name, directory, methods in runs:
    directory = pathlib.Path(directory)
    model, _ = saved.load_model(directory,
                                     reduce=ReduceConfig(method="none"))
    report = run_benchmark(
        model.config, methods, args.text_len, args.image_size,
        batch_start=args.batch, batch_step=args.batch, max_batch=args.batch,
        repeats=args.repeats, min_seconds=args.min_seconds, progress=False)
    reports[name] = report
    params = parameter_count(directory)
    for result in report["results"]:
      label = name if result["name"] == "none" else f"{name} + {result['name']}"
      rows.append(dict(model=label, parameters=params,
                       gflops_per_example=result["flops_per_example"] / 1e9,
                       examples_per_s=result["throughput"],
                       tokens_per_layer=result["tokens_per_layer"]))
  teacher = rows[0]
  for row in rows:
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
      batch=args.batch, text_len=args.text_len, image_size=args.image_size,
      rows=rows, modality_split=pruning["modality_split"],
      prunable_sparsity=pruning["prunable_sparsity"],
      total_sparsity=pruning["total_sparsity"],
      pruned_sizes=pruning["pruned_sizes"],
      bench_reports=reports)
  lines = [f"{'model':<18}{'params':>10}{'vs T':>7}{'GFLOP/ex':>10}"
           f"{'vs T':>7}{'ex/s':>9}{'speedup':>9}"]
  for r in rows:
    lines.append(
        f"{r['model']:<18}{r['parameters']:>10,}"
        f"{r['parameters_vs_teacher']:>7.3f}{r['gflops_per_example']:>10.4f}"
        f"{r['flops_vs_teacher']:>7.3f}{r['examples_per_s']:>9.1f}"
        f"{r['speedup_vs_teacher']:>8.2f}x")
  lines.append("prunable sparsity by modality: " + ", ".join(
      f"{k} {v['sparsity']:.3f}" for k, v in pruning["modality_split"].items()))
  print("\n".join(lines))
  platform = out["device"]["platform"]
  path = pathlib.Path(args.out) / f"efficientvlm_{platform}_{out['dtype']}.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(out, indent=2) + "\n")
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
