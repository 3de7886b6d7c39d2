"""`ReduceConfig`: which reducer runs, where and how hard, validated.

The model configs hold one (`ViltConfig.reduce`, `MeterConfig.reduce`); the
config files' `reduce` block maps onto it key for key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pumer_jax.reduce.official import SCORE_HEADS
from pumer_jax.reduce.schedule import METHODS, SEMANTICS, ReductionSchedule


@dataclasses.dataclass(frozen=True)
class ReduceConfig:
  """Which reducer runs, where, and how hard (config key `reduce`).

  Attributes:
    method: "none", "pumer", "tome", "dynamicvit" or "smres".
    layers: 0-based layers (ViLT) or fusion blocks (METER) that reduce.
    prune_ratio, image_merge_ratio, text_merge_ratio: PuMer's p, m, t.
    tome_r, tome_schedule, tome_inflection: ToMe's r per layer.
    keep_ratios: DynamicViT's rho per stage.
    prop_attn: proportional attention (log size added to the logits).
    protect_cls: never prune or merge the CLS tokens.
    clamp_merge: clamp PuMer's merge counts at what bipartite matching can
      merge (PuMer's reference code) instead of raising.
    smres_size: (H, W) input resolution for "smres".
    gumbel_temperature: DynamicViT's Gumbel-softmax temperature.
    semantics: how PuMer reduces. "official" (the default) runs PuMer's
      reference code: its masked softmax with fractional text masks and no
      proportional attention, the image CLS token prunable, prune scores
      summed over every text row (padding too), plain-mean merges on the
      raw key cosine, no reduction at a layer whose prune count rounds to
      0, merge counts clamped (`reduce/official.py`). There `prop_attn`,
      `protect_cls` and `clamp_merge` do not apply. "sized" is this
      project's variant: ToMe's size tracking and proportional attention,
      size-weighted merges, padding never matched with real tokens, the
      CLS token kept, scores from the real text rows only.
    score_heads: which heads score image tokens for PuMer's pruning:
      "mean" (the reference's `sim_method="mh"`) or "first" (head 0,
      `"first_head"`, the reference's ViLT VQA default).
  """

  method: str = "none"
  layers: tuple[int, ...] = ()
  prune_ratio: float = 0.0
  image_merge_ratio: float = 0.0
  text_merge_ratio: float = 0.0
  tome_r: int | tuple[int, ...] = 0
  tome_schedule: str = "constant"
  tome_inflection: float = 0.0
  keep_ratios: tuple[float, ...] = ()
  prop_attn: bool = True
  protect_cls: bool = True
  clamp_merge: bool = False
  smres_size: tuple[int, int] | None = None
  gumbel_temperature: float = 1.0
  semantics: str = "official"
  score_heads: str = "mean"

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(
          f"reduce.method={self.method!r} is not a method; use one of "
          f"{METHODS}.")
    if self.semantics not in SEMANTICS:
      raise ValueError(
          f"reduce.semantics={self.semantics!r} must be one of {SEMANTICS}: "
          "'official' runs PuMer's reference code, 'sized' this project's "
          "size-tracking variant.")
    if self.score_heads not in SCORE_HEADS:
      raise ValueError(
          f"reduce.score_heads={self.score_heads!r} must be one of "
          f"{SCORE_HEADS} (PuMer's sim_method mh / first_head).")

  @property
  def official(self) -> bool:
    """PuMer under its reference code's semantics (see `semantics`)."""
    return self.method == "pumer" and self.semantics == "official"

  @classmethod
  def from_mapping(cls, mapping: Any) -> "ReduceConfig":
    """From a dict or ConfigDict; unknown keys are an error."""
    values = dict(mapping.items()) if mapping is not None else {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
      raise ValueError(
          f"reduce config has unknown keys {unknown}; valid keys: "
          f"{sorted(names)}."
      )
    for key in ("layers", "keep_ratios", "smres_size"):
      if values.get(key) is not None:
        values[key] = tuple(values[key])
    if isinstance(values.get("tome_r"), (list, tuple)):
      values["tome_r"] = tuple(values["tome_r"])
    return cls(**values)

  def replace(self, **changes) -> "ReduceConfig":
    return dataclasses.replace(self, **changes)

  def schedule(
      self, depth: int, image_len: int, text_len: int, arch: str = "vilt"
  ) -> ReductionSchedule:
    return ReductionSchedule.build(
        self.method,
        depth=depth,
        image_len=image_len,
        text_len=text_len,
        layers=self.layers,
        prune_ratio=self.prune_ratio,
        image_merge_ratio=self.image_merge_ratio,
        text_merge_ratio=self.text_merge_ratio,
        tome_r=self.tome_r,
        tome_schedule=self.tome_schedule,
        tome_inflection=self.tome_inflection,
        keep_ratios=self.keep_ratios,
        protect_cls=self.protect_cls,
        clamp_merge=self.clamp_merge,
        semantics=self.semantics,
        arch=arch,
    )
