"""The one way to score a saved model under a reducer.

`score(model, batches, reduce=...)` runs the model over an evaluation split
(padded batches with a `valid` mask) with one compiled program and returns
`SplitScores`: each question's score, the predicted answers, the compiled
program's FLOPs per example, the tokens entering each layer and, given the
split's shapes_vqa records, the target recall per reduction layer. The model
is a model directory or a `(model, variables)` pair. `forward` is the
jitted inference forward every tool compiles (search, visualize, speed).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from pumer_jax.bench.measure import compiled_flops
from pumer_jax.evaluate import target_recall
from pumer_jax.models import saved
from pumer_jax.models.inputs import model_inputs
from pumer_jax.reduce import ReduceConfig

RESAMPLES = 1000
SEED = 0

ModelSource = str | pathlib.Path | tuple[nn.Module, dict[str, Any]]


def load(model: ModelSource, reduce: ReduceConfig | None = None,
         **overrides) -> tuple[nn.Module, dict[str, Any]]:
  """`(module, variables)` of a model directory or a `(model, variables)`
  pair, under `reduce` (None: the reducer it was saved with) and other
  model-config `overrides` (`dtype="bfloat16"`)."""
  if reduce is not None:
    overrides["reduce"] = reduce
  if isinstance(model, (str, pathlib.Path)):
    return saved.load_model(model, **overrides)
  module, variables = model
  if overrides:
    module = type(module)(dataclasses.replace(module.config, **overrides))
  return module, variables


def forward(module: nn.Module, **outputs: bool) -> Callable:
  """The jitted inference forward: `(params, batch) -> the model's outputs`
  (batch: a data batch; its model inputs are taken from it). `outputs`:
  the model's output flags (`track_source`, `output_hidden_states`,
  `output_attentions`)."""
  return jax.jit(lambda params, batch: module.apply(
      {"params": params}, **model_inputs(batch), train=False, **outputs))


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


def example_scores(logits, batch: dict) -> np.ndarray:
  """Each valid example's score: the VQA soft score of the argmax answer
  (`labels`), else 1 for a correct class (`label`)."""
  answer = np.asarray(logits).argmax(-1)
  if "labels" in batch:
    got = np.take_along_axis(batch["labels"], answer[:, None], -1)[:, 0]
  else:
    got = (answer == np.asarray(batch["label"])).astype(np.float64)
  return got[np.asarray(batch["valid"], bool)]


@dataclasses.dataclass(frozen=True)
class SplitScores:
  """A model under one reducer on one split.

  Attributes:
    scores: [examples] each valid example's score, in split order.
    example_ids: [examples] their indices in the split (the batches'
      `example_id`, else their order).
    answers: [examples] the predicted answer (class) indices.
    flops_per_example: from the compiled program's cost analysis.
    tokens_per_layer: tokens entering each layer, then the output count.
    recall: target recall and background share per reduction layer
      (`target_recall.summarize`), when the split's records were given.
    first_batch: the first batch's outputs (numpy), source maps included
      when tracked: what a picture of a few examples needs.
  """

  scores: np.ndarray
  example_ids: np.ndarray
  answers: np.ndarray
  flops_per_example: float
  tokens_per_layer: list[int]
  recall: list[dict] | None = None
  first_batch: dict[str, Any] | None = None

  @property
  def mean(self) -> float:
    return float(self.scores.mean())

  def ci95(self) -> tuple[float, float]:
    return bootstrap_ci(self.scores)

  def summary(self) -> dict[str, Any]:
    """The JSON row: score, interval, examples, tokens, recall."""
    row = dict(vqa_score=self.mean, ci95=self.ci95(),
               examples=int(len(self.scores)),
               tokens_per_layer=self.tokens_per_layer,
               flops_per_example=self.flops_per_example)
    if self.recall is not None:
      row["per_layer"] = self.recall
    return row


def score(model: ModelSource,
          make_batches: Callable[[], Iterable[dict[str, np.ndarray]]], *,
          reduce: ReduceConfig | None = None,
          records: Sequence[dict] | None = None,
          track_source: bool | None = None, **overrides) -> SplitScores:
  """Scores `model` under `reduce` on the split `make_batches()` yields.

  Args:
    model: a model directory or `(model, variables)`.
    make_batches: a fresh pass over the split (equal batch shapes, so one
      compiled program serves all).
    reduce: the reducer (None: the model's own).
    records: the split's shapes_vqa records (`target_recall.split_records`):
      target recall per reduction layer is computed from the source maps.
    track_source: keep the source maps (default: when `records` are given
      and the reducer has reduction layers).
    **overrides: model-config fields (`dtype="bfloat16"`).
  """
  module, variables = load(model, reduce, **overrides)
  params = variables["params"]
  c = module.config
  compiled = None
  scores, ids, answers, tokens, first = [], [], [], [], None
  layers, per_layer = (), []
  for batch in make_batches():
    if compiled is None:
      text_len = batch["input_ids"].shape[1]
      layers = target_recall.model_layers(c, text_len)
      if track_source is None:
        track_source = records is not None and bool(layers)
      fn = forward(module, track_source=track_source)
      compiled = fn.lower(params, batch).compile()
      flops = (compiled_flops(compiled) or 0.0) / batch["input_ids"].shape[0]
      per_layer = [[] for _ in layers]
    out = compiled(params, batch)
    valid = np.asarray(batch["valid"], bool)
    scores.append(example_scores(out["logits"], batch))
    ids.append(np.asarray(batch["example_id"])[valid] if "example_id" in batch
               else np.arange(valid.sum()) + sum(len(i) for i in ids))
    answers.append(np.asarray(out["logits"]).argmax(-1)[valid])
    tokens = [int(t) for t in np.asarray(out["tokens"])]
    if first is None:
      first = jax.tree.map(np.asarray, out)
    if records is not None and track_source:
      got = target_recall.layer_recalls(
          out["sources"], batch, records, c.image_size, c.patch_size,
          target_recall.first_patch_column(c, batch))
      for mine, theirs in zip(per_layer, got):
        mine.extend(theirs)
  if compiled is None:
    raise ValueError("the evaluation split produced no batches.")
  recall = (target_recall.summarize(layers, per_layer)
            if records is not None and track_source else None)
  return SplitScores(
      scores=np.concatenate(scores), example_ids=np.concatenate(ids),
      answers=np.concatenate(answers), flops_per_example=flops,
      tokens_per_layer=tokens, recall=recall, first_batch=first)
