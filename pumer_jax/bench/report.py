"""The benchmark's output: the printed table and the JSON file."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from pumer_jax.bench import breakdown

# The keys of a report and of each of its results (a test holds the
# benchmark to them; benchmarks/README.md explains each).
SCHEMA_KEYS = frozenset((
    "schema_version", "preset", "created", "versions", "device", "dtype",
    "model", "image_size", "text_len", "batch", "timing", "results", "peer",
    "xla_flags", "protocols",
))
RESULT_KEYS = frozenset((
    "name", "method", "reduce", "image_size", "batch", "throughput", "spread",
    "batch_trials", "speedup", "flops_per_example", "flop_ratio",
    "flop_speedup", "efficiency", "peak_memory_bytes", "memory_reduction",
    "memory_estimate_bytes", "memory_estimate_reduction", "activation_bytes",
    "activation_reduction", "tokens_per_layer", "autograd_memory_bytes",
    "autograd_memory_reduction", "autograd_residual_bytes",
    "train_memory_bytes", "train_memory_reduction", "train_throughput",
    "train_spread", "train_speedup", "crossover", "time_breakdown",
))


def _fmt(value: float | None, spec: str, scale: float = 1.0) -> str:
  return "-" if value is None else format(value * scale, spec)


def format_table(report: dict[str, Any]) -> str:
  """The report as a plain-text table, one row per method."""
  d = report["device"]
  h, w = report["image_size"]
  lines = [
      f"device {d['platform']}: {d['kind']} | dtype {report['dtype']} | "
      f"image {h}x{w} | text {report['text_len']} | batch from "
      f"{report['batch']['start']} by {report['batch']['step']} to "
      f"{report['batch']['max']}, memory at {report['batch']['memory']}, "
      f"activations at {report['batch']['activation']}",
  ]
  header = ("method", "batch", "ex/s", "p10-p90 ex/s", "speedup", "GFLOP/ex",
            "FLOP ratio", "FLOP speedup", "efficiency", "peak MiB",
            "mem red.", "est. MiB", "act. MiB", "act. red.", "tokens out")
  rows = [header]
  for r in report["results"]:
    s = r["spread"]
    rows.append((
        r["name"], str(r["batch"]), _fmt(r["throughput"], ".1f"),
        f"{_fmt(s['throughput_p10'], '.1f')}-"
        f"{_fmt(s['throughput_p90'], '.1f')}",
        _fmt(r["speedup"], ".2f"), _fmt(r["flops_per_example"], ".3f", 1e-9),
        _fmt(r["flop_ratio"], ".3f"), _fmt(r["flop_speedup"], ".2f"),
        _fmt(r["efficiency"], ".2f"),
        _fmt(r["peak_memory_bytes"], ".1f", 2.0 ** -20),
        _fmt(r["memory_reduction"], ".1%"),
        _fmt(r["memory_estimate_bytes"], ".1f", 2.0 ** -20),
        _fmt(r["activation_bytes"], ".1f", 2.0 ** -20),
        _fmt(r["activation_reduction"], ".1%"),
        str(r["tokens_per_layer"][-1]),
    ))
  lines += _aligned(rows)
  lines += _protocol_lines(report)
  peer = report.get("peer")
  if peer:
    lines.append(f"peer: {peer['name']} on {peer['device']}, batch "
                 f"{peer['batch']}, {peer['threads']} threads")
    for mode in ("eager", "compile"):
      entry = peer.get(mode)
      if entry is None:
        continue
      if "error" in entry:
        lines.append(f"  {mode}: failed ({entry['error'].splitlines()[0]})")
        continue
      ratio = peer.get(f"flax_none_over_{mode}")
      lines.append(f"  {mode}: {entry['throughput']:.1f} ex/s; Flax none / "
                   f"HF {mode} = {_fmt(ratio, '.2f')}")
    rounds = peer.get("interleaved")
    if rounds:
      ratios = rounds["round_ratios"]
      lines.append(
          f"  interleaved, {rounds['rounds']} rounds: Flax none "
          f"{rounds['flax_none']['throughput']:.1f} ex/s, HF eager "
          f"{rounds['eager']['throughput']:.1f} ex/s; Flax none / HF eager "
          f"= {rounds['flax_none_over_eager']:.2f} (rounds "
          f"{min(ratios):.2f}-{max(ratios):.2f})")
  return "\n".join(lines)


def _aligned(rows: list[tuple[str, ...]]) -> list[str]:
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  return ["  ".join(c.rjust(wd) if i else c.ljust(wd)
                    for i, (c, wd) in enumerate(zip(row, widths)))
          for row in rows]


def _protocol_lines(report: dict[str, Any]) -> list[str]:
  """The memory protocols, the train step and the crossover, when run."""
  protocols = report.get("protocols") or {}
  results = report["results"]
  lines = []
  if protocols.get("autograd") or protocols.get("train_step"):
    lines.append(f"memory protocols at batch {report['batch']['memory']} "
                 "(compiled; MiB and reduction vs none), train step:")
    rows = [("method", f"inference act. @{report['batch']['activation']}",
             "red.", "autograd", "red.",
             "kept for backward", "train step", "red.", "train ex/s",
             "train speedup")]
    for r in results:
      rows.append((
          r["name"], _fmt(r["activation_bytes"], ".1f", 2.0 ** -20),
          _fmt(r["activation_reduction"], ".1%"),
          _fmt(r["autograd_memory_bytes"], ".1f", 2.0 ** -20),
          _fmt(r["autograd_memory_reduction"], ".1%"),
          _fmt(r["autograd_residual_bytes"], ".1f", 2.0 ** -20),
          _fmt(r["train_memory_bytes"], ".1f", 2.0 ** -20),
          _fmt(r["train_memory_reduction"], ".1%"),
          _fmt(r["train_throughput"], ".2f"), _fmt(r["train_speedup"], ".2f")))
    lines += _aligned(rows)
  batches = protocols.get("crossover_batches") or []
  if batches:
    lines.append("inference speedup vs none by batch; crossover = the "
                 "smallest batch from which a method stays faster:")
    rows = [("method", *(f"b={b}" for b in batches), "crossover")]
    for r in results:
      c = r["crossover"]
      where = "-" if c["baseline"] else str(c["crossover_batch"] or "never")
      rows.append((r["name"], *(_fmt(x, ".2f") for x in c["speedup"]),
                   where))
    lines += _aligned(rows)
  if protocols.get("time_breakdown"):
    lines.append(f"reduction layers' time by part at batch "
                 f"{report['batch']['memory']} (profiler trace; share of "
                 "the layer):")
    header = [h for h in breakdown.HEADER if any(
        h in row["shares"] for r in results for row in r["time_breakdown"])]
    rows = [("method", "layer", "layer ms", *header)]
    for r in results:
      for row in r["time_breakdown"]:
        rows.append((r["name"], str(row["layer"]),
                     _fmt(row["layer_us"], ".2f", 1e-3),
                     *(_fmt(row["shares"].get(h, 0.0), ".1%") for h in header)))
    lines += _aligned(rows)
  return lines


def output_path(out_dir: str | pathlib.Path, kind: str, report: dict,
                suffix: str = ".json") -> pathlib.Path:
  """`{kind}_{preset}_{platform}_{dtype}{suffix}` under `out_dir`."""
  preset = report.get("preset") or "custom"
  name = f"{kind}_{preset}_{report['device']['platform']}_{report['dtype']}"
  return pathlib.Path(out_dir) / f"{name}{suffix}"


def write_json(path: pathlib.Path, data: dict[str, Any]) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(data, indent=2) + "\n")
  return path


def write_result(out_dir: str | pathlib.Path, stem: str, result: dict[str, Any],
                 lines: list[str]) -> pathlib.Path:
  """A benchmark script's output: prints the markdown `lines` and writes
  them as `{stem}.md` beside `{stem}.json`; returns the JSON's path."""
  text = "\n".join(lines) + "\n"
  print(text)
  path = write_json(pathlib.Path(out_dir) / f"{stem}.json", result)
  path.with_suffix(".md").write_text(text)
  return path
