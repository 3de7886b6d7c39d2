"""Accuracy with intervals, compiled cost and measured speed of reducer settings.

What a matched-cost comparison of reducers needs, per setting: the mean
VQA score over test questions with a 95% bootstrap interval (resampling
questions), the compiled FLOP ratio against the unreduced model, the tokens
entering each layer, target recall per reduction layer, and the speedup,
timed for every setting in one process (`measure_cost_and_speed`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np

from pumer_jax.bench.measure import compiled_flops, time_jitted
from pumer_jax.evaluate import target_recall
from pumer_jax.models import saved
from pumer_jax.models.inputs import model_inputs
from pumer_jax.reduce import ReduceConfig

RESAMPLES = 1000
SEED = 0


def bootstrap_ci(values: np.ndarray, resamples: int = RESAMPLES,
                 seed: int = SEED) -> tuple[float, float]:
  """95% percentile interval of the mean of `values` over resampled items.

  Paired differences (two settings on the same questions) pass their
  per-question difference.
  """
  values = np.asarray(values, np.float64)
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, len(values), size=(resamples, len(values)))
  means = values[idx].mean(axis=1)
  return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _forward(model_dir, reduce: ReduceConfig):
  model, variables = saved.load_model(model_dir, reduce=reduce)
  fn = jax.jit(lambda p, b: model.apply({"params": p}, **model_inputs(b)))
  return fn, variables["params"]


def example_scores(logits, batch: dict) -> np.ndarray:
  """Each valid example's score: the VQA soft score of the argmax answer
  (`labels`), else 1 for a correct class (`label`)."""
  answer = np.asarray(logits).argmax(-1)
  if "labels" in batch:
    got = np.take_along_axis(batch["labels"], answer[:, None], -1)[:, 0]
  else:
    got = (answer == np.asarray(batch["label"])).astype(np.float64)
  return got[np.asarray(batch["valid"], bool)]


def question_scores(model_dir, reduce: ReduceConfig,
                    make_batches: Callable[[], Iterable[dict]]
                    ) -> tuple[np.ndarray, float, list[int]]:
  """(per-question scores, compiled FLOPs per example, tokens entering
  each layer) of the model in `model_dir` under `reduce`: one compile
  serves all (the batches share a shape)."""
  fn, params = _forward(model_dir, reduce)
  scores, compiled, flops, tokens = [], None, 0.0, []
  for batch in make_batches():
    if compiled is None:
      compiled = fn.lower(params, batch).compile()
      flops = compiled_flops(compiled) / batch["input_ids"].shape[0]
    out = compiled(params, batch)
    scores.append(example_scores(out["logits"], batch))
    tokens = [int(t) for t in np.asarray(out["tokens"])]
  return np.concatenate(scores), flops, tokens


def evaluate_setting(model_dir, config, reduce: ReduceConfig,
                     make_batches, split: str) -> dict[str, Any]:
  """One row of a trade-off table: scores with their interval, tokens per
  layer, and target recall per reduction layer, from one tracked pass
  (cost and speed come from `measure_cost_and_speed`)."""
  model, variables = saved.load_model(model_dir, reduce=reduce)
  c = model.config
  track = reduce.method in ("pumer", "tome", "dynamicvit")
  fn = jax.jit(lambda p, b: model.apply({"params": p}, **model_inputs(b),
                                        track_source=track))
  records = target_recall.split_records(config, split) if track else None
  layers, per_layer = (), []
  scores, tokens = [], []
  for batch in make_batches():
    if track and not layers:
      layers = target_recall.model_layers(c, batch["input_ids"].shape[1])
      per_layer = [[] for _ in layers]
    out = fn(variables["params"], batch)
    scores.append(example_scores(out["logits"], batch))
    tokens = [int(t) for t in np.asarray(out["tokens"])]
    if track:
      got = target_recall.layer_recalls(
          out["sources"], batch, records, c.image_size, c.patch_size,
          target_recall.first_patch_column(c, batch))
      for mine, theirs in zip(per_layer, got):
        mine.extend(theirs)
  scores = np.concatenate(scores)
  row = dict(vqa_score=float(scores.mean()), ci95=bootstrap_ci(scores),
             examples=int(len(scores)), tokens_per_layer=tokens)
  if track:
    row["per_layer"] = target_recall.summarize(layers, per_layer)
  return row


def measure_cost_and_speed(settings: Mapping[str, tuple[Any, ReduceConfig]],
                           batch: dict, *, min_seconds: float = 2.0,
                           rounds: int = 4) -> dict[str, dict[str, Any]]:
  """Compiled FLOPs and examples per second of every `name: (model_dir,
  reduce)`, all in this process (ratios within one run are what compare).

  Every program is compiled first; then the settings are timed in
  `rounds` interleaved rounds, each setting `min_seconds / rounds` per
  round (median call), so a load change on a shared machine hits all of
  them alike. The rate is the median over rounds; `rate_range` gives the
  lowest and highest round. Settings that run the same program (the same
  reducer, whatever the weights) are compiled and timed once.
  """
  size = batch["input_ids"].shape[0]
  programs = {}  # reduce -> (compiled, params, flops/example)
  for model_dir, reduce in settings.values():
    key = reduce
    if key not in programs:
      fn, params = _forward(model_dir, reduce)
      compiled = fn.lower(params, batch).compile()
      programs[key] = (compiled, params, compiled_flops(compiled) / size)
  rates = {key: [] for key in programs}
  for _ in range(rounds):
    for key, (compiled, params, _) in programs.items():
      timing = time_jitted(compiled, params, batch, warmup=1, repeats=3,
                           min_seconds=min_seconds / rounds)
      rates[key].append(size / timing.median_s)
  out = {}
  for name, (_, reduce) in settings.items():
    key = reduce
    out[name] = dict(flops_per_example=programs[key][2],
                     examples_per_s=float(np.median(rates[key])),
                     rate_range=(min(rates[key]), max(rates[key])))
  return out
