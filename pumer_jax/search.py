r"""`python -m pumer_jax.search`: a reducer's most accurate schedule under a FLOP budget.

  python -m pumer_jax.search --model_dir checkpoints/vilt_shapes --method pumer \
      --flop_ratio 0.5 [--config configs/vilt_shapes.py:pretrain] [--split validation]

Enumerates the method's settings (PuMer: reduce layers and p, m, t; ToMe:
layers and a constant r; SmRes: the input resolution), measures each
schedule's FLOP ratio from XLA's `cost_analysis()` (of the lowered program
while screening, cached by schedule: settings with the same token counts
are costed once; of the compiled one for the rows reported), keeps those
within the budget, evaluates the `--top` most expensive of them off the
shelf on the split, and prints the best few (JSON with `--out`).
A budget below every schedule's cost is an error that names the cheapest.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import pathlib
from collections.abc import Callable, Iterable
from typing import Any

import jax
from tqdm import tqdm

from pumer_jax.configs.base import load_config
from pumer_jax.data import loaders
from pumer_jax.evaluate import tradeoff
from pumer_jax.models import ViltConfig, saved
from pumer_jax.models.inputs import model_inputs
from pumer_jax.reduce import ReduceConfig

SEARCHABLE = ("pumer", "tome", "smres")
PRUNE_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
MERGE_RATIOS = (0.1, 0.2, 0.3)
TEXT_MERGE_RATIOS = (0.0, 0.2)
# Settings whose token-count proxy is more than PROXY_WINDOW[1] over the
# budget are not costed, and costing stops PROXY_WINDOW[0] below the
# cheapest schedule kept (the proxy ignores the quadratic attention and the
# fixed cost of the embeddings and head: it misses by a few points).
PROXY_WINDOW = (-0.15, 0.10)


def reducible_depth(config) -> int:
  """The layers a reducer's `layers` index: ViLT's, or METER's fusion blocks."""
  return (config.num_hidden_layers if isinstance(config, ViltConfig)
          else config.num_fusion_layers)


def candidates(method: str, config) -> list[ReduceConfig]:
  """Every setting the search tries for `method` on a model `config`."""
  if method not in SEARCHABLE:
    raise ValueError(f"--method {method!r} is not searchable; use one of "
                     f"{SEARCHABLE} (DynamicViT's keep ratios need training).")
  depth = reducible_depth(config)
  if method == "pumer":
    # Runs of consecutive layers that leave the last layer unreduced.
    runs = [tuple(range(a, b)) for a in range(depth - 1)
            for b in range(a + 1, depth)]
    return [ReduceConfig(method="pumer", layers=layers, prune_ratio=p,
                         image_merge_ratio=m, text_merge_ratio=t)
            for layers, p, m, t in itertools.product(
                runs, PRUNE_RATIOS, MERGE_RATIOS, TEXT_MERGE_RATIOS)]
  if method == "tome":
    starts = range(depth)
    return [ReduceConfig(method="tome", layers=tuple(range(s, depth)),
                         tome_r=r)
            for s in starts for r in range(1, 33)]
  if method == "smres":
    full = config.input_size or (config.image_size, config.image_size)
    step = config.patch_size
    return [ReduceConfig(method="smres", smres_size=(h, h * full[1] // full[0]))
            for h in range(full[0] - step, step - 1, -step)
            if (h * full[1] // full[0]) % step == 0]


def _cost_key(reduce: ReduceConfig, config, batch) -> tuple[Any, float]:
  """(what the compiled program depends on, the token-count FLOP proxy):
  settings with the same token counts compile to the same program."""
  image = (config.image_size // config.patch_size) ** 2 + 1
  text = batch["input_ids"].shape[1]
  if reduce.method == "smres":
    h, w = reduce.smres_size
    small = (h // config.patch_size) * (w // config.patch_size) + 1
    return ("smres", reduce.smres_size), (small + text) / (image + text)
  try:
    schedule = dataclasses.replace(config, reduce=reduce).schedule(
        image, batch["input_ids"].shape[1])
  except ValueError:
    return None, 1.0  # a count the method refuses (merging past the cap)
  return (reduce.method, schedule.steps), schedule.flops_proxy()


def lowered_flops(model, params, batch: dict) -> float:
  """FLOPs of `model` on `batch` from XLA's cost analysis of the lowered
  program: no compile, and `params` may be abstract (`jax.eval_shape`),
  so settings with extra parameters (DynamicViT) are costed untrained."""
  forward = jax.jit(lambda p, b: model.apply({"params": p},
                                             **model_inputs(b))["logits"])
  cost = forward.lower(params, batch).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def search(model_dir, make_batches: Callable[[], Iterable[dict]],
           method: str, flop_ratio: float, *,
           options: list[ReduceConfig] | None = None, top: int = 8,
           progress: bool = True,
           cost_cache: dict[Any, float] | None = None) -> list[dict]:
  """The `top` most expensive schedules within `flop_ratio`, evaluated.

  `options` replaces the method's default settings (`candidates`). Costs
  are screened on XLA's cost analysis of each lowered program (it matches
  the compiled one to < 0.1% on these models, without compiling; pass one
  `cost_cache` to several searches on the same model to share it); the
  rows returned carry the compiled program's FLOP ratio. Returns rows
  sorted by accuracy (then by lower FLOP ratio), each with the setting,
  its FLOP ratio and its mean VQA score / accuracy.
  """
  if not 0.0 < flop_ratio <= 1.0:
    raise ValueError(f"--flop_ratio={flop_ratio} must be in (0, 1].")
  base, variables = saved.load_model(model_dir)
  params = variables["params"]
  batch = next(iter(make_batches()))
  probe = {k: v[:8] for k, v in batch.items()}  # FLOPs per example: any batch
  cost_cache = {} if cost_cache is None else cost_cache

  def flops(reduce: ReduceConfig) -> float:
    model = type(base)(dataclasses.replace(base.config, reduce=reduce))
    return lowered_flops(model, params, probe)

  full = cost_cache.setdefault("none", flops(ReduceConfig()))
  options = options or candidates(method, base.config)
  keyed = [(*_cost_key(r, base.config, batch), r) for r in options]
  keyed = [k for k in keyed if k[0] is not None]
  if not keyed:
    raise ValueError(f"no {method} setting is valid for this model.")
  # Cost settings from the most expensive (by proxy) down, skipping those
  # the proxy puts far over budget, until `top` distinct schedules fit and
  # the proxy has fallen clearly below the cheapest of them.
  keyed.sort(key=lambda k: -k[1])
  within: dict[Any, tuple[float, ReduceConfig]] = {}
  cheapest = None
  bar = tqdm(total=len(keyed), desc=f"{method}: FLOPs", disable=not progress)
  for key, proxy, reduce in keyed:
    bar.update()
    if proxy - flop_ratio > PROXY_WINDOW[1]:
      continue
    if (len(within) >= top and proxy - min(r for r, _ in within.values())
        < PROXY_WINDOW[0]):
      break
    if key not in cost_cache:
      cost_cache[key] = flops(reduce) / full
    ratio = cost_cache[key]
    cheapest = ratio if cheapest is None else min(cheapest, ratio)
    if ratio <= flop_ratio and key not in within:
      within[key] = (ratio, reduce)
  bar.close()
  if not within:
    if cheapest is None:  # all over budget by proxy: cost the cheapest one
      key, _, reduce = keyed[-1]
      cheapest = cost_cache.setdefault(key, flops(reduce) / full)
    raise ValueError(
        f"no {method} schedule reaches a FLOP ratio of {flop_ratio}: the "
        f"cheapest tried costs {cheapest:.3f} of the unreduced model.")
  chosen = sorted(within.values(), key=lambda p: -p[0])[:top]
  rows = []
  if "none@compiled" not in cost_cache:
    cost_cache["none@compiled"] = evaluate(model_dir, ReduceConfig(),
                                           make_batches)[1]
  for ratio, reduce in tqdm(chosen, desc=f"{method}: accuracy",
                            disable=not progress):
    score, flops_per_example = evaluate(model_dir, reduce, make_batches)
    rows.append(dict(reduce=dataclasses.asdict(reduce),
                     flop_ratio=flops_per_example / cost_cache["none@compiled"],
                     screened_flop_ratio=ratio, score=score))
  return sorted(rows, key=lambda r: (-r["score"], r["flop_ratio"]))


def evaluate(model_dir, reduce: ReduceConfig,
             make_batches: Callable[[], Iterable[dict]]) -> tuple[float, float]:
  """(mean VQA score or accuracy, compiled FLOPs per example) of the model
  under `reduce`."""
  scores, flops, _ = tradeoff.question_scores(model_dir, reduce, make_batches)
  return float(scores.mean()), flops


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--method", required=True, choices=SEARCHABLE)
  parser.add_argument("--flop_ratio", type=float, required=True)
  parser.add_argument("--config", default="configs/vilt_shapes.py:pretrain",
                      help="the config file (and variant) of the model's data")
  parser.add_argument("--split", default="validation")
  parser.add_argument("--top", type=int, default=8,
                      help="schedules nearest the budget to evaluate")
  parser.add_argument("--out", default="", help="write the rows as JSON")
  args = parser.parse_args(argv)
  config = load_config(args.config)
  rows = search(args.model_dir, loaders.eval_batches(config, args.split),
                args.method, args.flop_ratio, top=args.top)
  print(f"{'score':>7} {'FLOPs':>6}  setting")
  for r in rows:
    setting = {k: v for k, v in r["reduce"].items()
               if v != getattr(ReduceConfig(), k) or k == "method"}
    print(f"{100 * r['score']:6.1f}% {r['flop_ratio']:6.3f}  {setting}")
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
  return rows


if __name__ == "__main__":
  main()
