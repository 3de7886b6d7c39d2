"""Evaluation: task metrics for one checkpoint under several reducers.

Each reducer is applied to the same parameters (off the shelf, or the one
the checkpoint was trained with); per method we report the task metric,
tokens entering each layer, the compiled-FLOP ratio and the measured
throughput ratio to the unreduced model, all from one run. `main` is
eval.py's body.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterable
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.experimental import checkify

from pumer_jax.bench.measure import compiled_flops, time_jitted
from pumer_jax.data import loaders
from pumer_jax.evaluate.metrics import (
    METRIC_NAMES,
    batch_metric_sums,
    recall_at_k,
)
from pumer_jax.evaluate import vqa_results
from pumer_jax.evaluate.report import format_table, write_report
from pumer_jax.evaluate.retrieval import retrieval_scores
from pumer_jax.evaluate.score import forward
from pumer_jax.models import saved
from pumer_jax.models.inputs import model_inputs
from pumer_jax.reduce import ReduceConfig
from pumer_jax.train import sharding


def reducer_for(name: str, config: ml_collections.ConfigDict,
                trained: ReduceConfig) -> ReduceConfig:
  """The reducer called `name`: the trained one if it is that method, else
  `config.reducers[name]` (applied off the shelf)."""
  if name == trained.method:
    return trained
  if name not in config.reducers:
    raise ValueError(
        f"eval.methods names {name!r} but config.reducers has no such entry "
        f"(has {sorted(config.reducers)}).")
  return ReduceConfig.from_mapping(config.reducers[name])


def check_reducer_params(name: str, reduce: ReduceConfig, params: Any,
                         model_dir: Any) -> None:
  """A reducer with parameters of its own needs them in the checkpoint."""
  if not reduce.param_stages():
    return
  scope = f"{reduce.param_name}_0"
  if not any(scope in module for module in params.values()):
    raise ValueError(
        f"method {name!r} ({reduce.method}) needs trained parameters "
        f"({reduce.param_name}_*) that {model_dir} does not hold. Train "
        f"with reduce.method={reduce.method!r} (train.py) first.")


def make_eval_step(model, task: str, debug_checks: bool = False):
  """The jitted `(params, batch) -> (metric sum, valid count, tokens,
  argmax answer per example)`.

  With `debug_checks` the model's input-value checks run inside (checkify)
  and a failed one raises.
  """
  def eval_step(p, batch):
    out = model.apply({"params": p}, **model_inputs(batch), train=False,
                      debug_checks=debug_checks)
    total, count = batch_metric_sums(task, out, batch)
    answer = out["logits"].argmax(-1) if "logits" in out else None
    return total, count, out["tokens"], answer

  if not debug_checks:
    return jax.jit(eval_step)
  checked = jax.jit(checkify.checkify(eval_step, errors=checkify.user_checks))

  def step(p, batch):
    err, out = checked(p, batch)
    err.throw()
    return out

  return step


def evaluate(
    model_dir: str | pathlib.Path,
    config: ml_collections.ConfigDict,
    make_batches: Callable[[], Iterable[dict[str, np.ndarray]]],
    methods: list[str],
    answer_vocab: list[str] | None = None,
    cache_dir: str | pathlib.Path | None = None,
) -> dict[str, Any]:
  """Evaluates the model in `model_dir` under each reducer in `methods`.

  `make_batches()` returns a fresh pass over the evaluation split (padded
  batches with a `valid` mask, so every example counts exactly once). For
  retrieval it is a `RetrievalBatches` (matched pairs, captions, images):
  the headline value is IR R@1, with IR/TR R@1/5/10 beside it. For VQA
  with `answer_vocab`, each result also holds `answers`: the server's
  records (`vqa_results`); on a split without answers (VQA v2 test,
  test_dev) `value` is None. With `cache_dir`, retrieval keeps its
  finished score blocks there (`retrieval_{method}/`), so a killed run
  resumes.
  """
  base_model, variables = saved.load_model(model_dir)
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
      check_reducer_params(name, reduce, params, model_dir)
      eval_step = make_eval_step(model, task, config.debug_checks)

      extra = {}
      total, count, tokens = 0.0, 0.0, None
      collector = (vqa_results.AnswerCollector(answer_vocab)
                   if task == "vqa" and answer_vocab else None)
      answered = False  # any valid question with an annotated answer
      for batch in (make_batches() if task != "retrieval"
                    else make_batches.pairs()):
        if timing_batch is None:
          timing_batch = sharding.put_batch(batch, mesh)
        s, c, tokens, answer = eval_step(params,
                                         sharding.put_batch(batch, mesh))
        total += float(s)
        count += float(c)
        if collector is not None:
          collector.add(batch["question_id"], jax.device_get(answer),
                        batch["valid"])
          answered |= bool((np.asarray(batch["labels"])[
              np.asarray(batch["valid"], bool)].sum(-1) > 0).any())
      if count == 0:
        raise ValueError("the evaluation split produced no valid examples.")
      if collector is not None:
        extra["answers"] = collector.records()
      if task == "retrieval":
        scores, image_of_caption = retrieval_scores(
            forward(model), params, make_batches.captions,
            make_batches.images, mesh,
            cache_dir=(None if cache_dir is None
                       else pathlib.Path(cache_dir) / f"retrieval_{name}"),
            cache_key=dict(model_dir=str(model_dir), method=name,
                           reduce=reduce.to_dict()),
            progress=config.get("progress", False))
        extra = recall_at_k(scores, image_of_caption)
        total, count = extra["ir_r@1"], 1.0
      fwd = forward(model)
      timing = time_jitted(fwd, params, timing_batch,
                           repeats=config.eval.timing_repeats, warmup=1,
                           min_seconds=config.eval.timing_min_seconds)
      batch_size = timing_batch["input_ids"].shape[0]
      results.append(dict(
          method=name,
          reduce=reduce.to_dict(),
          metric=METRIC_NAMES[task],
          value=(None if collector is not None and not answered
                 else total / count),
          examples=int(count),
          tokens_per_layer=[int(t) for t in np.asarray(tokens)],
          flops_per_example=compiled_flops(
              fwd.lower(params, timing_batch).compile()) / batch_size,
          examples_per_s=batch_size / timing.median_s,
          **extra,
      ))
  # The unreduced model is the reference, where it was evaluated.
  reference = next((r for r in results
                    if ReduceConfig.from_mapping(r["reduce"]) == ReduceConfig()),
                   results[0])
  for r in results:
    r["flop_ratio"] = r["flops_per_example"] / reference["flops_per_example"]
    r["speedup"] = r["examples_per_s"] / reference["examples_per_s"]
  return dict(task=task, model_dir=str(model_dir),
              device=str(jax.devices()[0].device_kind),
              timing_batch=int(timing_batch["input_ids"].shape[0]),
              results=results)


def main(config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
  """eval.py's body: evaluate, print the table, write the JSON report."""
  workdir = pathlib.Path(workdir)
  model_dir = pathlib.Path(config.eval.checkpoint or workdir / "model")
  methods = [m.strip() for m in config.eval.methods.split(",") if m.strip()]
  vocab = (loaders.answer_vocab_for(config, loaders.prepared_builder(config))
           if config.task == "vqa" else None)
  report = evaluate(model_dir, config,
                    loaders.eval_batches(config, config.eval.split),
                    methods, answer_vocab=vocab,
                    cache_dir=workdir / f"partial_{config.eval.split}")
  split = config.eval.split
  report["split"] = split
  print(format_table(report))
  if jax.process_index() == 0:
    for r in report["results"]:  # the server's files, not the report's
      if "answers" in r:
        records = r.pop("answers")
        path = vqa_results.write_results(
            vqa_results.results_path(workdir, split, r["method"]), records)
        r["results_file"] = str(path)
        print(f"wrote {path} ({len(records)} answers, the VQA evaluation "
              "server's format)")
    path = workdir / f"eval_{split}.json"
    write_report(report, path)
    print(f"wrote {path}")
  return report
