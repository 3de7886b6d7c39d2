"""`python -m pumer_jax.bench --sweep`: reducer settings vs measured speedup.

Measures, in one `run_benchmark` run, the speedup over the unreduced model
of either every record of an eval-results file (then plots accuracy vs
speedup and highlights the Pareto front) or a grid of PuMer ratios/layers
(then, lacking accuracies, plots FLOP ratio vs speedup with the
efficiency-1 limit). Writes a PNG and a JSON next to each other.

Eval results are the report eval.py writes (WORKDIR/eval_SPLIT.json):
  {"results": [{"method": "pumer", "reduce": {"method": "pumer", ...},
                "metric": "vqa_score", "value": 0.71, ...}, ...]}
"""

from __future__ import annotations

import itertools
import json
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pumer_jax.bench.presets import SCHEMA_VERSION, check_setup
from pumer_jax.bench.report import output_path, write_json
from pumer_jax.bench.runner import reduce_dict, run_benchmark
from pumer_jax.models import ReduceConfig, ViltConfig


def grid_methods(
    base: ReduceConfig,
    grid: Mapping[str, Sequence[Any]],
    check: Callable[[ReduceConfig], Any],
) -> tuple[dict[str, ReduceConfig], list[dict[str, Any]]]:
  """Every combination of `grid`'s values on top of `base`.

  Args:
    base: the reducer the grid varies (e.g. the preset's PuMer setting).
    grid: ReduceConfig field -> values, e.g. {"prune_ratio": (0.1, 0.2)}.
    check: raises ValueError for a setting the model cannot run (e.g. a
      merge beyond bipartite matching's cap); such settings are skipped.

  Returns:
    `(label -> ReduceConfig, skipped)`, skipped as `{reduce, error}` dicts.
  """
  fields = set(base.field_names())
  unknown = sorted(set(grid) - fields)
  if unknown:
    raise ValueError(f"sweep grid has fields {unknown} that reduce.method="
                     f"{base.method!r} does not take; its fields: "
                     f"{sorted(fields)}.")
  methods, skipped = {}, []
  names = list(grid)
  for values in itertools.product(*(grid[n] for n in names)):
    changes = {n: tuple(v) if isinstance(v, list) else v
               for n, v in zip(names, values)}
    reduce = base.replace(**changes)
    try:
      check(reduce)
    except ValueError as err:
      skipped.append(dict(reduce=reduce_dict(reduce), error=str(err)))
      continue
    methods.setdefault(reduce.describe(), reduce)
  return methods, skipped


def load_eval_results(path: str | pathlib.Path,
                      ) -> list[tuple[ReduceConfig, float]]:
  """Reads eval.py's report: `(reducer, value)` of each of its `results`.

  Every problem names the record. Two records of the same setting are an
  error (which value would the plot show?).
  """
  try:
    report = json.loads(pathlib.Path(path).read_text())
  except (OSError, json.JSONDecodeError) as error:
    raise ValueError(f"{path}: not a readable eval.py report ({error}).")
  records = report.get("results") if isinstance(report, dict) else None
  if not isinstance(records, list) or not records:
    raise ValueError(
        f"{path}: expected eval.py's report, a JSON object with a non-empty "
        "'results' list (WORKDIR/eval_SPLIT.json).")
  out: list[tuple[ReduceConfig, float]] = []
  seen: dict[ReduceConfig, int] = {}
  for i, record in enumerate(records):
    where = f"{path}: results[{i}]"
    if not isinstance(record, dict) or not {"reduce", "value"} <= set(record):
      raise ValueError(f"{where} needs 'reduce' and 'value' keys (as "
                       "eval.py writes them).")
    try:
      config = ReduceConfig.from_mapping(record["reduce"])
    except ValueError as error:
      raise ValueError(f"{where}: {error}") from error
    value = record["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(f"{where}: value {value!r} is not a number.")
    if config in seen:
      raise ValueError(
          f"{where} repeats the setting of results[{seen[config]}].")
    seen[config] = i
    out.append((config, float(value)))
  return out


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[bool]:
  """Marks the points no other point beats on both x and y (both maximised)."""
  points = list(zip(xs, ys))
  return [
      not any(ox >= x and oy >= y and (ox > x or oy > y)
              for ox, oy in points)
      for x, y in points
  ]


def plot_sweep(points: list[dict[str, Any]], y_key: str, title: str,
               path: pathlib.Path) -> None:
  """Scatter of `y_key` vs measured speedup; Pareto front (accuracy) or the
  efficiency-1 limit (FLOP ratio) drawn over it."""
  fig = Figure(figsize=(8, 5.5), layout="constrained")
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  xs = [p["speedup"] for p in points]
  ys = [p[y_key] for p in points]
  ax.scatter(xs, ys, color="0.6", zorder=2, label="settings")
  for p, x, y in zip(points, xs, ys):
    ax.annotate(p["name"], (x, y), fontsize=6, xytext=(3, 3),
                textcoords="offset points")
  if y_key == "accuracy":
    front = sorted((x, y) for p, x, y in zip(points, xs, ys) if p["pareto"])
    ax.plot(*zip(*front), color="tab:red", marker="o", zorder=3,
            label="Pareto front")
    ax.set_ylabel("task metric (eval.py results)")
  else:
    lo, hi = min(xs + [1.0]), max(xs + [1.0])
    grid = [lo + (hi - lo) * i / 50 for i in range(51)]
    ax.plot(grid, [1 / g for g in grid], color="tab:blue", linestyle="--",
            label="efficiency 1 (FLOP-bound limit)")
    ax.set_ylim(0.0, max(ys + [1.0]) * 1.08)  # the limit shoots up below 1x
    ax.set_ylabel("FLOP ratio (reduced / unreduced)")
  ax.axvline(1.0, color="0.85", zorder=1)
  ax.set_xlabel("measured speedup over 'none' (same run)")
  ax.set_title(title, fontsize=9)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=150)


def _title(report: dict[str, Any], y_key: str) -> str:
  d = report["device"]
  h, w = report["image_size"]
  what = ("accuracy vs measured speedup" if y_key == "accuracy" else
          "FLOP ratio vs measured speedup (no eval results given)")
  return (f"{report.get('preset') or 'ViLT'}: {what}\n{d['platform']} "
          f"({d['kind']}), {report['dtype']}, image {h}x{w}, text "
          f"{report['text_len']}, batch {report['batch']['start']}-"
          f"{report['batch']['max']}")


def run_sweep(
    model_config: ViltConfig,
    text_len: int,
    image_size: tuple[int, int],
    *,
    out_dir: str | pathlib.Path,
    grid_base: ReduceConfig | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    eval_results: str | pathlib.Path | None = None,
    **bench_kwargs: Any,
) -> dict[str, Any]:
  """Measures the sweep's settings against 'none' and writes PNG + JSON.

  Args:
    model_config, text_len, image_size: as `run_benchmark`.
    out_dir: where `sweep_{preset}_{platform}_{dtype}.{json,png}` go.
    grid_base, grid: the grid swept when there are no eval results.
    eval_results: a records file (see `load_eval_results`); when given, its
      settings are measured and the grid is not used.
    **bench_kwargs: forwarded to `run_benchmark` (batches, repeats, ...).

  Returns:
    The sweep dict written to the JSON (the benchmark report inside).
  """
  hw = tuple(image_size)
  check = lambda r: check_setup(model_config, {"x": r}, text_len, hw, {})
  accuracy: dict[str, float] = {}
  skipped: list[dict[str, Any]] = []
  if eval_results is not None:
    methods = {}
    for reduce, acc in load_eval_results(eval_results):
      check(reduce)
      name = "none" if reduce == ReduceConfig() else reduce.describe()
      if name in methods:  # same label, different hidden fields
        name = f"{name} #{len(methods)}"
      methods[name] = reduce
      accuracy[name] = acc
    y_key = "accuracy"
  else:
    if grid_base is None or not grid:
      raise ValueError("a sweep without eval results needs grid_base and "
                       "grid.")
    methods, skipped = grid_methods(grid_base, grid, check)
    y_key = "flop_ratio"
  if all(r == ReduceConfig() for r in methods.values()):
    raise ValueError("the sweep has no reduced setting to measure.")
  # A sweep compares speed: the autograd protocol's compiles are left out.
  report = run_benchmark(model_config, methods, text_len, hw,
                         **{"autograd": False, **bench_kwargs})

  points = []
  for r in report["results"]:
    point = dict(name=r["name"], method=r["method"], reduce=r["reduce"],
                 speedup=r["speedup"], flop_ratio=r["flop_ratio"],
                 efficiency=r["efficiency"],
                 accuracy=accuracy.get(r["name"]), pareto=False)
    if point[y_key] is not None:
      points.append(point)
  if y_key == "accuracy":
    marks = pareto_front([p["speedup"] for p in points],
                         [p["accuracy"] for p in points])
    for p, mark in zip(points, marks):
      p["pareto"] = mark
  json_path = output_path(out_dir, "sweep", report)
  png_path = json_path.with_suffix(".png")
  plot_sweep(points, y_key, _title(report, y_key), png_path)
  sweep = dict(
      schema_version=SCHEMA_VERSION,
      kind="sweep",
      y_axis=y_key,
      eval_results=None if eval_results is None else str(eval_results),
      points=points,
      skipped=skipped,
      files=dict(json=str(json_path), png=str(png_path)),
      benchmark=report,
  )
  write_json(json_path, sweep)
  return sweep
