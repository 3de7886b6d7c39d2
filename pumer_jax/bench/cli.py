"""The benchmark's command line: `python -m pumer_jax.bench ...`."""

from __future__ import annotations

import argparse
import json
import pathlib
from collections.abc import Sequence
from typing import Any

from pumer_jax import xla_cpu
from pumer_jax.bench.pareto import run_sweep
from pumer_jax.bench.presets import (
    DEFAULT_OUT,
    PEERS,
    PRESETS,
    ModelConfig,
    select_methods,
)
from pumer_jax.bench.report import format_table, output_path, write_json
from pumer_jax.bench.runner import run_benchmark
from pumer_jax.models import ReduceConfig, saved

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m pumer_jax.bench",
      description="Throughput, FLOPs and memory of token reducers on ViLT "
                  "and METER.")
  parser.add_argument("--preset", choices=sorted(PRESETS), default="vilt_vqa")
  parser.add_argument("--methods", default=None,
                      help="comma-separated names of the preset's methods "
                           "(default: all the preset defines)")
  parser.add_argument("--dtype", choices=("float32", "bfloat16"),
                      default="float32")
  parser.add_argument("--peer", choices=PEERS, default=None,
                      help="also time Hugging Face ViLT (PyTorch)")
  parser.add_argument("--peer_compile", action=argparse.BooleanOptionalAction,
                      default=True, help="also try torch.compile for --peer")
  parser.add_argument("--out", default=DEFAULT_OUT)
  parser.add_argument("--batch_start", type=int, default=None)
  parser.add_argument("--batch_step", type=int, default=None)
  parser.add_argument("--max_batch", type=int, default=None)
  parser.add_argument("--memory_batch", type=int, default=None)
  parser.add_argument("--activation_batch", type=int, default=None,
                      help="batch of the compiled activation bytes (default: "
                      "the preset's, e.g. 256 for ViLT-B/32)")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--min_seconds", type=float, default=0.0)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--debug_checks", action="store_true",
                      help="compile the input-value checks in (checkify); "
                      "the timings then include their cost")
  parser.add_argument("--autograd", action=argparse.BooleanOptionalAction,
                      default=True, help="the paper's memory protocol: the "
                      "forward keeping what a backward pass reads")
  parser.add_argument("--train_step", action="store_true",
                      help="also compile and time one AdamW train step at "
                      "the memory batch")
  parser.add_argument("--crossover_batches", default="",
                      help="comma-separated batches (e.g. 1,2,4,8) to time "
                      "every method at, to find where a reducer pays")
  parser.add_argument("--time_breakdown", action="store_true",
                      help="also profile each reduction layer's time by "
                      "part (attention, MLP, reducer score/match/apply)")
  parser.add_argument("--sweep", action="store_true",
                      help="ratios/layers grid -> Pareto chart (PNG + JSON)")
  parser.add_argument("--eval_results", default=None,
                      help="with --sweep: eval.py's report (WORKDIR/"
                           "eval_SPLIT.json), to plot its task metric vs "
                           "speedup")
  parser.add_argument("--no_progress", action="store_true")
  parser.add_argument("--model_dir", default=None,
                      help="time this checkpoint's architecture (e.g. a "
                           "finalized EfficientVLM model) instead of the "
                           "preset's; the preset gives shapes and methods")
  args = parser.parse_args(argv)
  try:
    args.crossover_batches = [int(b) for b in args.crossover_batches.split(",")
                              if b.strip()]
  except ValueError:
    parser.error(f"--crossover_batches={args.crossover_batches!r} must be "
                 "comma-separated ints, e.g. 1,2,4,8.")
  if args.eval_results and not args.sweep:
    parser.error("--eval_results needs --sweep.")
  if args.sweep and args.methods:
    parser.error("--sweep measures the preset's grid (or the eval results' "
                 "configs); drop --methods.")
  return args


def checkpoint_architecture(model_dir: str) -> ModelConfig:
  """A model checkpoint's config, unreduced: throughput needs no weights."""
  path = pathlib.Path(model_dir) / saved.CONFIG_FILE
  if not path.is_file():
    raise FileNotFoundError(
        f"{path} is missing: --model_dir must be a model checkpoint "
        "(train.py's WORKDIR/model, `pumer_jax.convert`'s or finalize's --out).")
  config = saved.config_from_dict(json.loads(path.read_text()))
  return config.replace(reduce=ReduceConfig())


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  xla_cpu.apply_fast_defaults()
  preset = PRESETS[args.preset]
  model, label, image_size = preset.model, args.preset, preset.image_size
  if args.model_dir:
    model = checkpoint_architecture(args.model_dir)
    label = f"{args.preset}_{pathlib.Path(args.model_dir).name}"
    image_size = model.input_size or image_size
  model = model.replace(dtype=args.dtype)
  kwargs = dict(
      batch_start=args.batch_start or preset.batch_start,
      batch_step=args.batch_step or preset.batch_step,
      max_batch=args.max_batch, memory_batch=args.memory_batch,
      activation_batch=(args.activation_batch or preset.activation_batch
                        or None),
      repeats=args.repeats, warmup=args.warmup, min_seconds=args.min_seconds,
      seed=args.seed, progress=not args.no_progress, preset=label,
      debug_checks=args.debug_checks,
  )
  if args.sweep:
    sweep = run_sweep(model, preset.text_len, image_size,
                      out_dir=args.out, grid_base=preset.methods["pumer"],
                      grid=preset.sweep_grid,
                      eval_results=args.eval_results, **kwargs)
    print(format_table(sweep["benchmark"]))
    print(f"wrote {sweep['files']['json']} and {sweep['files']['png']}")
    return sweep
  names = (args.methods.split(",") if args.methods else list(preset.methods))
  methods = select_methods(preset.methods, [n.strip() for n in names])
  report = run_benchmark(model, methods, preset.text_len, image_size,
                         peer=args.peer, peer_compile=args.peer_compile,
                         autograd=args.autograd, train_step=args.train_step,
                         crossover_batches=args.crossover_batches,
                         time_breakdown=args.time_breakdown, **kwargs)
  print(format_table(report))
  path = write_json(output_path(args.out, "bench", report), report)
  print(f"wrote {path}")
  return report

