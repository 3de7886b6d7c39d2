r"""`python -m pumer_jax.search`: a reducer's most accurate schedule under a FLOP budget.

  python -m pumer_jax.search --model_dir checkpoints/vilt_shapes --method pumer \
      --flop_ratio 0.5 [--config configs/vilt_shapes.py:pretrain] [--split validation]

Enumerates the method's settings (its `search_space`: PuMer's reduce layers
and p, m, t; ToMe's layers and a constant r; SmRes's input resolution; ...),
measures each
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
import json
import pathlib
from collections.abc import Callable, Iterable
from typing import Any

import jax
from tqdm import tqdm

from pumer_jax.configs.base import load_config
from pumer_jax.data import loaders
from pumer_jax.evaluate import score as scoring
from pumer_jax.models import ViltConfig, saved
from pumer_jax.reduce import METHODS, Geometry, ReduceConfig, method_class

# Settings whose token-count proxy is more than PROXY_WINDOW[1] over the
# budget are not costed, and costing stops PROXY_WINDOW[0] below the
# cheapest schedule kept (the proxy ignores the quadratic attention and the
# fixed cost of the embeddings and head: it misses by a few points).
PROXY_WINDOW = (-0.15, 0.10)


def reducible_depth(config) -> int:
  """The layers a reducer's `layers` index: ViLT's, or METER's fusion blocks."""
  return (config.num_hidden_layers if isinstance(config, ViltConfig)
          else config.num_fusion_layers)


def _geometry(config, text_len: int = 1) -> tuple[Geometry, tuple[int, int]]:
  """The model's reducible geometry and its input (H, W)."""
  hw = tuple(config.input_size or (config.image_size, config.image_size))
  image_len = (hw[0] // config.patch_size) * (hw[1] // config.patch_size) + 1
  arch = "vilt" if isinstance(config, ViltConfig) else "meter"
  return (Geometry(arch, reducible_depth(config), image_len, text_len,
                   config.patch_size), hw)


def searchable() -> tuple[str, ...]:
  """The registered methods with a search space."""
  probe = Geometry("vilt", 4, 17, 8, 16)
  return tuple(sorted(name for name, cls in METHODS.items()
                      if cls.search_space(probe, (64, 64))))


def candidates(method: str, config) -> list[ReduceConfig]:
  """Every setting the search tries for `method` on a model `config`
  (the method's `search_space`)."""
  options = (method_class(method).search_space(*_geometry(config))
             if config is not None else [])
  if not options:
    raise ValueError(f"--method {method!r} is not searchable on this model; "
                     f"use one of {searchable()}.")
  return options


def _cost_key(reduce: ReduceConfig, config, text_len: int
              ) -> tuple[Any, float]:
  """(what the compiled program depends on, the token-count FLOP proxy):
  settings with the same token counts compile to the same program."""
  geometry, _ = _geometry(config, text_len)
  try:
    schedule = dataclasses.replace(config, reduce=reduce).schedule(
        geometry.image_len, text_len)
  except ValueError:
    return None, 1.0  # a count the method refuses (merging past the cap)
  return ((reduce.method, schedule.image_len, schedule.steps),
          schedule.flops_proxy(geometry.image_len))


def lowered_flops(model, params, batch: dict) -> float:
  """FLOPs of `model` on `batch` from XLA's cost analysis of the lowered
  program: no compile, and `params` may be abstract (`jax.eval_shape`),
  so a reducer with parameters of its own is costed untrained."""
  cost = scoring.forward(model).lower(params, batch).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def _params_for(model, params, probe):
  """`params`, or (a reducer with its own parameters) the abstract tree of
  the whole model: costing needs shapes only."""
  if not model.config.reduce.param_stages():
    return params
  return jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), **{k: probe[k] for k in
                                ("input_ids", "attention_mask",
                                 "pixel_values") if k in probe}))["params"]


RANKS = ("accuracy", "cost", "nearest")


def search(model_dir, make_batches: Callable[[], Iterable[dict]],
           method: str, flop_ratio: float, *,
           options: list[ReduceConfig] | None = None, top: int = 8,
           progress: bool = True, rank: str = "accuracy",
           cost_cache: dict[Any, float] | None = None) -> list[dict]:
  """The `top` most expensive schedules within `flop_ratio`, evaluated.

  `options` replaces the method's default settings (`candidates`). Costs
  are screened on XLA's cost analysis of each lowered program (it matches
  the compiled one to < 0.1% on these models, without compiling; pass one
  `cost_cache` to several searches on the same model to share it); the
  rows returned carry the compiled program's FLOP ratio. Returns rows
  sorted by accuracy (then by lower FLOP ratio), each with the setting,
  its FLOP ratio and its mean VQA score / accuracy.

  `rank="nearest"` ranks by cost alone: every setting is costed and the
  rows are those nearest the budget (over or under it), with `score` None.
  A method
  with parameters of its own (DynamicViT's predictors) has no accuracy off
  the shelf, so it is always ranked so (train the one you pick).
  """
  if not 0.0 < flop_ratio <= 1.0:
    raise ValueError(f"--flop_ratio={flop_ratio} must be in (0, 1].")
  if rank not in RANKS:
    raise ValueError(f"rank={rank!r} must be one of {RANKS}.")
  base, variables = saved.load_model(model_dir)
  params = variables["params"]
  batch = next(iter(make_batches()))
  probe = {k: v[:8] for k, v in batch.items()}  # FLOPs per example: any batch
  cost_cache = {} if cost_cache is None else cost_cache

  def flops(reduce: ReduceConfig) -> float:
    model = type(base)(dataclasses.replace(base.config, reduce=reduce))
    return lowered_flops(model, _params_for(model, params, probe), probe)

  full = cost_cache.setdefault("none", flops(ReduceConfig()))
  options = options or candidates(method, base.config)
  text_len = batch["input_ids"].shape[1]
  keyed = [(*_cost_key(r, base.config, text_len), r) for r in options]
  keyed = [k for k in keyed if k[0] is not None]
  if not keyed:
    raise ValueError(f"no {method} setting is valid for this model.")
  if keyed[0][2].param_stages() and rank == "accuracy":
    rank = "cost"
  nearest = rank != "accuracy"  # cost alone: cost every setting
  # Cost settings from the most expensive (by proxy) down, skipping those
  # the proxy puts far over budget, until `top` distinct schedules fit and
  # the proxy has fallen clearly below the cheapest of them.
  keyed.sort(key=lambda k: -k[1])
  within: dict[Any, tuple[float, ReduceConfig]] = {}
  costed: dict[Any, tuple[float, ReduceConfig]] = {}
  cheapest = None
  bar = tqdm(total=len(keyed), desc=f"{method}: FLOPs", disable=not progress)
  for key, proxy, reduce in keyed:
    bar.update()
    if not nearest and proxy - flop_ratio > PROXY_WINDOW[1]:
      continue
    if (not nearest and len(within) >= top
        and proxy - min(r for r, _ in within.values()) < PROXY_WINDOW[0]):
      break
    if key not in cost_cache:
      cost_cache[key] = flops(reduce) / full
    ratio = cost_cache[key]
    costed.setdefault(key, (ratio, reduce))
    cheapest = ratio if cheapest is None else min(cheapest, ratio)
    if ratio <= flop_ratio and key not in within:
      within[key] = (ratio, reduce)
  bar.close()
  if nearest:  # every setting costed, ranked by cost alone
    order = ((lambda p: abs(p[0] - flop_ratio)) if rank == "nearest" else
             (lambda p: (p[0] > flop_ratio, -p[0] if p[0] <= flop_ratio
                         else p[0])))
    ranked = sorted(costed.values(), key=order)
    return [dict(reduce=r.to_dict(), flop_ratio=ratio,
                 screened_flop_ratio=ratio, score=None)
            for ratio, r in ranked[:top]]
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
    rows.append(dict(reduce=reduce.to_dict(),
                     flop_ratio=flops_per_example / cost_cache["none@compiled"],
                     screened_flop_ratio=ratio, score=score))
  return sorted(rows, key=lambda r: (-r["score"], r["flop_ratio"]))


def evaluate(model_dir, reduce: ReduceConfig,
             make_batches: Callable[[], Iterable[dict]]) -> tuple[float, float]:
  """(mean VQA score or accuracy, compiled FLOPs per example) of the model
  under `reduce`."""
  got = scoring.score(model_dir, make_batches, reduce=reduce)
  return got.mean, got.flops_per_example


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--method", required=True, choices=searchable())
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
    reduce = ReduceConfig.from_mapping(r["reduce"])
    shown = "untrained" if r["score"] is None else f"{100 * r['score']:6.1f}%"
    print(f"{shown:>7} {r['flop_ratio']:6.3f}  {reduce.describe()}")
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
  return rows


if __name__ == "__main__":
  main()
