"""Evaluation: task metrics for one checkpoint under several reducers.

Each reducer is applied to the same parameters (off the shelf, or the one
the checkpoint was trained with); per method we report the task metric,
tokens entering each layer, the compiled-FLOP ratio and the measured
throughput ratio to the unreduced model, all from one run.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable, Iterable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pumer_jax import checkpoint as model_checkpoint
from pumer_jax import sharding
from pumer_jax.cost import compiled_flops
from pumer_jax.models.reducers import ReduceConfig
from pumer_jax.models.inputs import model_inputs
from pumer_jax.timing import time_jitted

METRIC_NAMES = {"vqa": "vqa_score", "ve": "accuracy", "nlvr2": "accuracy",
                "retrieval": "ir_r@1"}


def batch_metric_sums(task: str, out: dict[str, Any], batch: dict[str, Any]):
  """(sum of the per-example metric, number of valid examples) for a batch.

  VQA score: the soft score (min(1, count/3)) of the predicted answer.
  VE/NLVR2: accuracy. Retrieval: accuracy of the ITM score's sign on
  matched/unmatched pairs (R@K needs the full score matrix: `recall_at_k`).
  """
  valid = batch["valid"].astype(jnp.float32)
  logits = out["logits"]
  if task == "vqa":
    predicted = jnp.argmax(logits, axis=-1)
    per_example = jnp.take_along_axis(batch["labels"], predicted[:, None],
                                      axis=-1)[:, 0]
  elif task in ("ve", "nlvr2"):
    per_example = (jnp.argmax(logits, -1) == batch["label"]).astype(
        jnp.float32)
  else:
    per_example = ((logits[:, 0] > 0) == (batch["label"] > 0)).astype(
        jnp.float32)
  return (per_example * valid).sum(), valid.sum()


def recall_at_k(scores: np.ndarray, image_of_caption: np.ndarray,
                ks=(1, 5, 10)) -> dict[str, float]:
  """Image and text retrieval recall from an [images, captions] score matrix.

  IR: for each caption, is its image among the top k images? TR: for each
  image, is any of its captions among the top k captions?
  """
  num_images = scores.shape[0]
  out = {}
  by_caption = np.argsort(-scores, axis=0)  # [images, captions]
  by_image = np.argsort(-scores, axis=1)  # [images, captions]
  for k in ks:
    ir = np.mean([image_of_caption[c] in by_caption[:k, c]
                  for c in range(scores.shape[1])])
    tr = np.mean([np.any(image_of_caption[by_image[i, :k]] == i)
                  for i in range(num_images)])
    out[f"ir_r@{k}"], out[f"tr_r@{k}"] = float(ir), float(tr)
  return out


def retrieval_scores(
    forward: Callable, params: Any,
    make_captions: Callable[[], Iterable[dict[str, np.ndarray]]],
    make_images: Callable[[], Iterable[dict[str, np.ndarray]]],
    mesh,
) -> tuple[np.ndarray, np.ndarray]:
  """ITM scores of every (image, caption) pair: [images, captions].

  Each caption batch is crossed with each image batch (Bc x Bi pairs per
  forward), as ViLT's retrieval evaluation. Returns the score matrix and
  the image index of each caption.
  """
  captions = list(make_captions())
  images = list(make_images())
  num_images = 1 + max(int(i) for b in images
                       for i, v in zip(b["image_index"], b["valid"]) if v)
  num_captions = 1 + max(int(c) for b in captions
                         for c, v in zip(b["caption_index"], b["valid"]) if v)
  scores = np.full((num_images, num_captions), -np.inf, np.float32)
  image_of_caption = np.full((num_captions,), -1, np.int64)
  text_keys = ("input_ids", "attention_mask", "token_type_ids")
  for cb in captions:
    real_c = np.asarray(cb["valid"], bool)
    image_of_caption[cb["caption_index"][real_c]] = cb["image_index"][real_c]
    for ib in images:
      bc, bi = len(cb["valid"]), len(ib["valid"])
      pairs = {k: np.repeat(cb[k], bi, axis=0) for k in text_keys if k in cb}
      pairs["pixel_values"] = np.tile(
          ib["pixel_values"], (bc,) + (1,) * (ib["pixel_values"].ndim - 1))
      logits = np.asarray(forward(params, sharding.put_batch(pairs, mesh))[
          "logits"])[:, 0].reshape(bc, bi)  # [captions, images]
      real_i = np.asarray(ib["valid"], bool)
      rows = ib["image_index"][real_i]
      cols = cb["caption_index"][real_c]
      scores[np.ix_(rows, cols)] = logits[np.ix_(real_c, real_i)].T
  if np.isneginf(scores).any() or (image_of_caption < 0).any():
    raise ValueError("the retrieval split left some (image, caption) pairs "
                     "unscored; its image/caption indices are not dense.")
  return scores, image_of_caption


def reducer_for(name: str, config: ml_collections.ConfigDict,
                trained: ReduceConfig) -> ReduceConfig:
  """The reducer called `name`: the trained one if it matches, else
  `config.reducers[name]` (applied off the shelf)."""
  if name == trained.method:
    return trained
  if name not in config.reducers:
    raise ValueError(
        f"eval.methods names {name!r} but config.reducers has no such entry "
        f"(has {sorted(config.reducers)}).")
  return ReduceConfig.from_mapping(config.reducers[name])


@dataclasses.dataclass(frozen=True)
class RetrievalBatches:
  """Fresh passes over a retrieval split: matched pairs (ITM accuracy,
  timing), captions and images (crossed for the full score matrix)."""

  pairs: Callable[[], Iterable[dict[str, np.ndarray]]]
  captions: Callable[[], Iterable[dict[str, np.ndarray]]]
  images: Callable[[], Iterable[dict[str, np.ndarray]]]


def evaluate(
    model_dir: str | pathlib.Path,
    config: ml_collections.ConfigDict,
    make_batches: Callable[[], Iterable[dict[str, np.ndarray]]],
    methods: list[str],
) -> dict[str, Any]:
  """Evaluates the model in `model_dir` under each reducer in `methods`.

  `make_batches()` returns a fresh pass over the evaluation split (padded
  batches with a `valid` mask, so every example counts exactly once). For
  retrieval it is a `RetrievalBatches` (matched pairs, captions, images):
  the headline value is IR R@1, with IR/TR R@1/5/10 beside it.
  """
  base_model, variables = model_checkpoint.load_model(model_dir)
  trained = base_model.config.reduce
  task = config.task
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.model)
  params = variables["params"]
  results = []
  timing_batch = None
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    for name in methods:
      reduce = reducer_for(name, config, trained)
      model = type(base_model)(
          dataclasses.replace(base_model.config, reduce=reduce))
      if reduce.method == "dynamicvit" and not any(
          k.startswith("keep_predictor")
          for module in params.values() for k in module):
        raise ValueError(
            f"method {name!r} (dynamicvit) needs trained keep predictors; "
            f"{model_dir} has none. Train with reduce.method=dynamicvit.")

      def forward(p, batch, model=model):
        return model.apply({"params": p}, **model_inputs(batch), train=False)

      @jax.jit
      def eval_step(p, batch, forward=forward):
        out = forward(p, batch)
        total, count = batch_metric_sums(task, out, batch)
        return total, count, out["tokens"]

      extra = {}
      total, count, tokens = 0.0, 0.0, None
      for batch in (make_batches() if task != "retrieval"
                    else make_batches.pairs()):
        if timing_batch is None:
          timing_batch = sharding.put_batch(batch, mesh)
        s, c, tokens = eval_step(params, sharding.put_batch(batch, mesh))
        total += float(s)
        count += float(c)
      if count == 0:
        raise ValueError("the evaluation split produced no valid examples.")
      if task == "retrieval":
        scores, image_of_caption = retrieval_scores(
            jax.jit(forward), params, make_batches.captions,
            make_batches.images, mesh)
        extra = recall_at_k(scores, image_of_caption)
        total, count = extra["ir_r@1"], 1.0
      fwd = jax.jit(forward)
      timing = time_jitted(fwd, params, timing_batch,
                           repeats=config.eval.timing_repeats, warmup=1,
                           min_seconds=config.eval.timing_min_seconds)
      batch_size = timing_batch["input_ids"].shape[0]
      results.append(dict(
          method=name,
          reduce=dataclasses.asdict(reduce),
          metric=METRIC_NAMES[task],
          value=total / count,
          examples=int(count),
          tokens_per_layer=[int(t) for t in np.asarray(tokens)],
          flops_per_example=compiled_flops(
              fwd.lower(params, timing_batch).compile()) / batch_size,
          examples_per_s=batch_size / timing.median_s,
          **extra,
      ))
  reference = next((r for r in results if r["method"] == "none"), results[0])
  for r in results:
    r["flop_ratio"] = r["flops_per_example"] / reference["flops_per_example"]
    r["speedup"] = r["examples_per_s"] / reference["examples_per_s"]
  return dict(task=task, model_dir=str(model_dir),
              device=str(jax.devices()[0].device_kind),
              timing_batch=int(timing_batch["input_ids"].shape[0]),
              results=results)


def format_table(report: dict[str, Any]) -> str:
  rows = [f"{'method':<12}{report['results'][0]['metric']:>12}{'examples':>10}"
          f"{'flop ratio':>12}{'speedup':>10}  tokens per layer"]
  for r in report["results"]:
    rows.append(
        f"{r['method']:<12}{100 * r['value']:>11.2f}%{r['examples']:>10}"
        f"{r['flop_ratio']:>12.3f}{r['speedup']:>9.2f}x  "
        f"{r['tokens_per_layer']}")
  return "\n".join(rows)


def write_report(report: dict[str, Any], path: pathlib.Path) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(report, indent=2) + "\n")


def main(config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
  """eval.py's body: evaluate, print the table, write the JSON report."""
  from pumer_jax import input_pipeline
  workdir = pathlib.Path(workdir)
  model_dir = pathlib.Path(config.eval.checkpoint or workdir / "model")
  methods = [m.strip() for m in config.eval.methods.split(",") if m.strip()]
  report = evaluate(model_dir, config,
                    input_pipeline.eval_batches(config, config.eval.split),
                    methods)
  report["split"] = config.eval.split
  print(format_table(report))
  if jax.process_index() == 0:
    path = workdir / f"eval_{config.eval.split}.json"
    write_report(report, path)
    print(f"wrote {path}")
  return report
