"""ToMe (Bolya et al., ICLR 2023): bipartite soft matching in every layer,
size-weighted merges and proportional attention (DESIGN 4.1, 4.4).

Modality-blind: in ViLT it merges across the whole `[text; image]` stream;
in METER it merges the image stream alone (its text is never reduced), on
the keys of the text side's cross-attention.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

from pumer_jax.reduce.config import ReduceConfig, register
from pumer_jax.reduce.counts import LayerCounts, check_layers, layer_tuple
from pumer_jax.reduce.merge import bipartite_merge, merge_cap
from pumer_jax.reduce.protocol import AttentionRule, Geometry

TOME_SCHEDULES = ("constant", "ramp", "list")
# The search grid: every start layer to the last, r from 1 to this.
SEARCH_MAX_R = 32


@register
@dataclasses.dataclass(frozen=True)
class Tome(ReduceConfig):
  """ToMe's settings (config key `reduce`, `method="tome"`).

  Attributes:
    layers: 0-based layers that merge; () means every layer.
    tome_r: r, the tokens merged per layer: an int ("constant", "ramp")
      or one int per layer ("list"). Capped at what a layer can merge, as
      the reference.
    tome_schedule: "constant", "ramp" (ToMe's linear schedule, its
      `parse_r`, see `tome_inflection`) or "list".
    tome_inflection: the ramp's inflection (ToMe's `r` tuple's second).
    protect_cls: never merge the first token (the [CLS]).
    prop_attn: proportional attention (log size added to the logits).
  """

  method: ClassVar[str] = "tome"
  label: ClassVar[str] = "ToMe"

  layers: tuple[int, ...] = ()
  tome_r: int | tuple[int, ...] = 0
  tome_schedule: str = "constant"
  tome_inflection: float = 0.0
  protect_cls: bool = True
  prop_attn: bool = True

  def __post_init__(self):
    object.__setattr__(self, "layers", layer_tuple(self.layers))
    if isinstance(self.tome_r, list):
      object.__setattr__(self, "tome_r", tuple(self.tome_r))
    if self.tome_schedule not in TOME_SCHEDULES:
      raise ValueError(f"reduce.tome_schedule={self.tome_schedule!r} must be "
                       f"one of {TOME_SCHEDULES}.")
    rs = self.tome_r if isinstance(self.tome_r, tuple) else (self.tome_r,)
    if (self.tome_schedule == "list") != isinstance(self.tome_r, tuple):
      raise ValueError(
          f"reduce.tome_r={self.tome_r!r} must be one int per layer when "
          "reduce.tome_schedule='list' and an int otherwise.")
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0
           for v in rs):
      raise ValueError(f"reduce.tome_r={self.tome_r!r} must be "
                       "non-negative ints.")

  def plan(self, geometry: Geometry, train: bool) -> tuple[LayerCounts, ...]:
    del train
    layers = (check_layers(self.layers, geometry.depth)
              or tuple(range(geometry.depth)))
    rs = per_layer_r(self.tome_r, self.tome_schedule, self.tome_inflection,
                     len(layers))
    if geometry.arch == "vilt":  # the whole mixed stream
      steps, tokens = [], geometry.image_len + geometry.text_len
      for layer, r in zip(layers, rs):
        merge = min(r, merge_cap(tokens, self.protect_cls))
        steps.append(LayerCounts(layer=layer, tokens_in=tokens, merge=merge))
        tokens -= merge
      return tuple(steps)
    steps, image, text = [], geometry.image_len, geometry.text_len
    for layer, r in zip(layers, rs):  # the image stream alone
      merge = min(r, merge_cap(image, self.protect_cls))
      steps.append(LayerCounts(layer=layer, tokens_in=image + text,
                               image_in=image, text_in=text,
                               merge_image=merge))
      image -= merge
    return tuple(steps)

  def attention_rule(self) -> AttentionRule:
    return AttentionRule(proportional=self.prop_attn)

  def reduce_sequence(self, counts, tokens, view, text_len, ctx):
    del text_len, ctx
    merged = bipartite_merge(tokens.x, view.keys, tokens.size, counts.merge,
                             protect_first=self.protect_cls,
                             source=tokens.source)
    return merged, None

  def reduce_streams(self, counts, text, image, view, ctx):
    del ctx
    image = bipartite_merge(image.x, view.image_keys, image.size,
                            counts.merge_image,
                            protect_first=self.protect_cls,
                            source=image.source)
    return text, image, None

  @classmethod
  def search_space(cls, geometry, image_hw):
    del image_hw
    depth = geometry.depth
    return [cls(layers=tuple(range(start, depth)), tome_r=r)
            for start in range(depth) for r in range(1, SEARCH_MAX_R + 1)]

  def describe(self) -> str:
    layers = ",".join(str(l) for l in self.layers)
    r = self.tome_r
    r = ",".join(map(str, r)) if isinstance(r, tuple) else r
    schedule = ("" if self.tome_schedule == "constant"
                else f" {self.tome_schedule}")
    return f"tome r{r}{schedule}" + (f" L{layers}" if layers else "")


def per_layer_r(r: int | Sequence[int], schedule: str, inflection: float,
                n: int) -> tuple[int, ...]:
  """ToMe's r for each of `n` merging layers."""
  if schedule == "list":
    if len(r) != n:
      raise ValueError(
          f"reduce.tome_r={r!r} must list one r per reduce layer ({n}) when "
          "reduce.tome_schedule='list'.")
    return tuple(r)
  if schedule == "constant" or n == 1:
    return (r,) * n
  # ToMe's linear schedule (its `parse_r`), arithmetic included: the first
  # layer's r is truncated to an int *before* interpolating, the last is 2r
  # minus it, and each step is truncated again.
  lo = int(r * (1.0 - inflection))
  step = (2 * r - 2 * lo) / (n - 1)
  rs = tuple(int(lo + step * i) for i in range(n))
  if any(v < 0 for v in rs):
    raise ValueError(f"reduce.tome_r={r!r} with tome_inflection="
                     f"{inflection} gives a negative r {rs}.")
  return rs
