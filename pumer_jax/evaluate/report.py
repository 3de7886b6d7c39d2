"""The evaluation report: a printed table, the JSON beside it, and the
accuracy/cost trade-off plot."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pumer_jax.reduce import ReduceConfig


def is_unreduced(row: dict[str, Any]) -> bool:
  """Whether a result row is the unreduced model's (its `reduce` block)."""
  return ReduceConfig.from_mapping(row["reduce"]) == ReduceConfig()


def format_table(report: dict[str, Any]) -> str:
  rows = [f"{'method':<12}{report['results'][0]['metric']:>12}{'examples':>10}"
          f"{'flop ratio':>12}{'speedup':>10}  tokens per layer"]
  for r in report["results"]:
    rows.append(
        f"{r['method']:<12}"
        + (f"{100 * r['value']:>11.2f}%" if r["value"] is not None
           else f"{'no answers':>12}")
        + f"{r['examples']:>10}"
        f"{r['flop_ratio']:>12.3f}{r['speedup']:>9.2f}x  "
        f"{r['tokens_per_layer']}")
  return "\n".join(rows)


def write_report(report: dict[str, Any], path: pathlib.Path) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(report, indent=2) + "\n")


def plot_tradeoff(rows: list[dict[str, Any]], path: pathlib.Path,
                  title: str) -> pathlib.Path:
  """Accuracy vs compiled FLOP ratio and vs measured speedup, one line per
  method, 95% intervals as bars, trained points as filled stars.

  Each row has `method`, `reduce`, `trained`, `vqa_score`, `ci95`,
  `flop_ratio` and `speedup`; the unreduced row (its `reduce` the
  unreduced model's) starts every line.
  """
  fig = Figure(figsize=(10, 4.2))
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, 2)
  base = next(r for r in rows if is_unreduced(r))
  methods = sorted({r["method"] for r in rows if r is not base
                    and not is_unreduced(r)})
  palette = matplotlib.colormaps["tab10"].colors
  colours = {m: palette[i % len(palette)] for i, m in enumerate(methods)}
  for ax, x_key, label, spread in (
      (axes[0], "flop_ratio", "compiled FLOP ratio", 0.006),
      (axes[1], "speedup", "measured speedup (x)", 0.015)):
    for m, method in enumerate(methods):
      # A small sideways shift per method keeps overlapping bars apart.
      shift = (m - (len(methods) - 1) / 2) * spread
      for trained in (False, True):
        pts = [r for r in rows if r["method"] == method
               and r["trained"] == trained]
        if not pts:
          continue
        if not trained:
          pts = pts + [base]
        pts = sorted(pts, key=lambda r: r[x_key])
        xs = [r[x_key] + (shift if r is not base else 0.0) for r in pts]
        ys = [100 * r["vqa_score"] for r in pts]
        err = [[100 * (r["vqa_score"] - r["ci95"][0]) for r in pts],
               [100 * (r["ci95"][1] - r["vqa_score"]) for r in pts]]
        ax.errorbar(xs, ys, yerr=err, color=colours[method], capsize=3,
                    marker="*" if trained else "o",
                    markersize=11 if trained else 5,
                    linestyle="none" if trained else "-",
                    label=f"{method}{' (trained)' if trained else ''}")
    ax.set_xlabel(label)
    ax.set_ylabel("VQA score (%)")
    ax.grid(alpha=0.3)
  axes[0].invert_xaxis()  # cheaper to the right, as the speedup axis
  axes[1].legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  return path
