"""Accuracy with intervals, compiled cost and measured speed of reducer settings.

What a matched-cost comparison of reducers needs, per setting (`compare`):
the mean score over the split's questions with a 95% bootstrap interval
(resampling questions), the paired difference from a reference setting with
its interval, the compiled FLOP ratio against the unreduced model, the
tokens entering each layer, target recall per reduction layer (shapes_vqa),
and the speedup, timed for every setting in one process, in interleaved
rounds (`measure_cost_and_speed`). The demo, the semantics ablation and the
EfficientVLM benchmark build their tables with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from pumer_jax.bench.measure import compiled_flops, time_jitted
from pumer_jax.evaluate import target_recall
from pumer_jax.evaluate.score import (
    RESAMPLES,
    SEED,
    ModelSource,
    bootstrap_ci,
    forward,
    load,
    score,
)
from pumer_jax.reduce import ReduceConfig

__all__ = ["RESAMPLES", "SEED", "Setting", "bootstrap_ci", "compare",
           "measure_cost_and_speed"]


@dataclasses.dataclass(frozen=True)
class Setting:
  """One row of a comparison: a model under a reducer.

  Attributes:
    model: a model directory (or `(model, variables)`).
    reduce: the reducer it runs under.
    method: the group it is plotted in (a method's name, or a model's).
    point: the operating point it stands for ("0.50"; "1.00" unreduced).
    trained: fine-tuned with this reducer (else off the shelf).
  """

  model: ModelSource
  reduce: ReduceConfig
  method: str
  point: str = "1.00"
  trained: bool = False


def compare(settings: Mapping[str, Setting],
            make_batches: Callable[[], Iterable[dict]], *,
            records=None, reference: str | None = None,
            differences: Sequence[tuple[str, str]] = (),
            timing_batch: dict | None = None, min_seconds: float = 2.0,
            rounds: int = 4) -> list[dict[str, Any]]:
  """A table row per setting, scored on one split, timed in one process.

  Args:
    settings: name -> Setting.
    make_batches: a fresh pass over the split.
    records: the split's shapes_vqa records, for target recall.
    reference: the setting the paired differences are taken against
      (default: the first).
    differences: more pairs `(a, b)`: a row "a - b" each, with the mean
      per-question difference a - b and its paired interval.
    timing_batch: the batch every setting is timed on (default: the
      split's first); None in `min_seconds=0` runs skips timing.

  Returns:
    Rows with the setting's name, method, point, trained, reduce, score,
    interval, `vs_reference` (mean paired difference) and its interval,
    tokens, recall, FLOPs per example and, timed, examples per second; then
    the `differences` rows.
  """
  reference = reference or next(iter(settings))
  scored = {name: score(s.model, make_batches, reduce=s.reduce,
                        records=records)
            for name, s in settings.items()}
  base = scored[reference].scores
  rows = []
  for name, s in settings.items():
    got = scored[name]
    diff = got.scores - base
    rows.append(dict(
        name=name, method=s.method, point=s.point, trained=s.trained,
        reduce=s.reduce.to_dict(), **got.summary(),
        vs_reference=float(diff.mean()), vs_reference_ci95=bootstrap_ci(diff)))
  if min_seconds > 0:
    batch = timing_batch or next(iter(make_batches()))
    measured = measure_cost_and_speed(
        {n: (s.model, s.reduce) for n, s in settings.items()}, batch,
        min_seconds=min_seconds, rounds=rounds)
    for row in rows:
      row.update(measured[row["name"]])
  for a, b in differences:
    diff = scored[a].scores - scored[b].scores
    rows.append(dict(name=f"{a} - {b}", method="difference",
                     point=settings[b].point, trained=settings[b].trained,
                     vqa_score=float(diff.mean()), ci95=bootstrap_ci(diff),
                     examples=int(len(diff))))
  return rows


def add_ratios(rows: list[dict[str, Any]], baseline: str) -> None:
  """Adds `flop_ratio` and `speedup` against the row named `baseline`
  (difference rows have neither)."""
  base = next(r for r in rows if r["name"] == baseline)
  for row in rows:
    if "flops_per_example" not in row:
      continue
    row["flop_ratio"] = row["flops_per_example"] / base["flops_per_example"]
    if "examples_per_s" in row:
      row["speedup"] = row["examples_per_s"] / base["examples_per_s"]


def measure_cost_and_speed(settings: Mapping[str, tuple[Any, ReduceConfig]],
                           batch: dict, *, min_seconds: float = 2.0,
                           rounds: int = 4) -> dict[str, dict[str, Any]]:
  """Compiled FLOPs and examples per second of every `name: (model,
  reduce)`, all in this process (ratios within one run are what compare).

  Every program is compiled first; then the settings are timed in
  `rounds` interleaved rounds, each setting `min_seconds / rounds` per
  round (median call), so a load change on a shared machine hits all of
  them alike. The rate is the median over rounds; `rate_range` gives the
  lowest and highest round. Settings that run the same program (the same
  architecture and reducer, whatever the weights) are compiled and timed
  once.
  """
  size = batch["input_ids"].shape[0]
  programs = {}  # model config -> (compiled, params, flops/example)
  keys = {}
  for name, (model, reduce) in settings.items():
    module, variables = load(model, reduce)
    keys[name] = key = module.config
    if key not in programs:
      params = variables["params"]
      compiled = forward(module).lower(params, batch).compile()
      programs[key] = (compiled, params, compiled_flops(compiled) / size)
  rates = {key: [] for key in programs}
  for _ in range(rounds):
    for key, (compiled, params, _) in programs.items():
      timing = time_jitted(compiled, params, batch, warmup=1, repeats=3,
                           min_seconds=min_seconds / rounds)
      rates[key].append(size / timing.median_s)
  out = {}
  for name, key in keys.items():
    out[name] = dict(flops_per_example=programs[key][2],
                     examples_per_s=float(np.median(rates[key])),
                     rate_range=(min(rates[key]), max(rates[key])))
  return out


def recall_records(config, split: str):
  """The split's shapes_vqa records (objects, referents) for target
  recall; None for a dataset that does not know its objects."""
  if config.data.name != "shapes_vqa":
    return None
  return target_recall.split_records(config, split)
