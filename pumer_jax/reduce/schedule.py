"""ReductionSchedule: every token count of a reduced model, as Python ints.

The schedule is computed once from the config and the static input lengths,
before tracing, so each reducer runs with shapes known at compile time and one
compiled program serves every batch. PuMer and ToMe reduce inside a layer
(after the attention residual, before the MLP), so "entering layer l" means
the counts that layer's attention sees; DynamicViT prunes just before its
layers, so there the layer's attention already sees `steps[..].tokens_out`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from pumer_jax.reduce.counts import (
    LayerCounts,
    check_layers,
    dynamicvit_steps,
    pumer_official_steps,
    pumer_steps,
    tome_steps,
)

METHODS = ("none", "pumer", "tome", "dynamicvit", "smres")
SEMANTICS = ("official", "sized")


@dataclasses.dataclass(frozen=True)
class ReductionSchedule:
  """Static per-layer token counts for one reducer on one input shape."""

  method: str
  depth: int
  image_len: int
  text_len: int
  steps: tuple[LayerCounts, ...] = ()

  def at(self, layer: int) -> LayerCounts | None:
    """The counts of `layer` if it reduces tokens, else None."""
    for step in self.steps:
      if step.layer == layer:
        return step
    return None

  @property
  def layers(self) -> tuple[int, ...]:
    return tuple(s.layer for s in self.steps)

  def tokens_in(self, layer: int) -> int:
    """Tokens (image + text) entering `layer`."""
    if not 0 <= layer <= self.depth:
      raise ValueError(f"layer {layer} is outside [0, {self.depth}].")
    total = self.image_len + self.text_len
    for step in self.steps:
      if step.layer < layer:
        total = step.tokens_out
    return total

  def image_text_in(self, layer: int) -> tuple[int, int]:
    """(image, text) tokens entering `layer`, for modality-aware methods."""
    if self.method == "tome":
      raise ValueError("ToMe merges across modalities: no image/text split.")
    image, text = self.image_len, self.text_len
    for step in self.steps:
      if step.layer < layer:
        image, text = step.image_out, step.text_out
    return image, text

  def flops_proxy(self) -> float:
    """Sum over layers of tokens its attention sees, relative to unreduced.

    A quick, token-linear cost proxy; benchmarks use compiled FLOPs instead.
    DynamicViT prunes before a block, so that block already sees fewer.
    """
    full = self.depth * (self.image_len + self.text_len)
    before = self.method == "dynamicvit"
    seen = (self.tokens_in(l + 1) if before and self.at(l) else
            self.tokens_in(l) for l in range(self.depth))
    return sum(seen) / full

  # --------------------------------------------------------------------------
  # Construction
  # --------------------------------------------------------------------------

  @classmethod
  def build(
      cls,
      method: str,
      *,
      depth: int,
      image_len: int,
      text_len: int,
      layers: Sequence[int] = (),
      prune_ratio: float = 0.0,
      image_merge_ratio: float = 0.0,
      text_merge_ratio: float = 0.0,
      tome_r: int | Sequence[int] = 0,
      tome_schedule: str = "constant",
      tome_inflection: float = 0.0,
      keep_ratios: Sequence[float] = (),
      protect_cls: bool = True,
      clamp_merge: bool = False,
      semantics: str = "sized",
      arch: str = "vilt",
  ) -> "ReductionSchedule":
    """Computes and validates the schedule; every error names its field.

    Args:
      method: one of `METHODS`.
      depth: number of layers (ViLT) or co-attention blocks (METER).
      image_len: image tokens entering the model, CLS included.
      text_len: padded text length (0 for ToMe on an image-only stream).
      layers: 0-based layers that reduce (ToMe: default all layers).
      prune_ratio, image_merge_ratio, text_merge_ratio: PuMer's p, m, t, each
        a fraction of the image (text) tokens entering that layer.
      tome_r: ToMe's r: an int ("constant" or "ramp") or one int per layer
        ("list"). ToMe caps r at what a layer can merge, as the reference.
      tome_schedule: "constant", "ramp" (ToMe's linear schedule, see
        `tome_inflection`) or "list".
      keep_ratios: DynamicViT's rho per stage, the fraction of the original
        non-CLS image tokens kept after each stage (decreasing). DynamicViT
        prunes *before* each of `layers` (its reference's `pruning_loc`).
      protect_cls: the image CLS token is never pruned or merged (the text
        CLS token never is, whatever this says).
      clamp_merge: PuMer merge counts past what bipartite matching can merge
        are clamped to it, as PuMer's reference code (DESIGN 4.3), instead
        of an error. Off by default, so a mistyped ratio cannot be silently
        lowered; METER's reference SNLI-VE/NLVR2 settings (m=0.5) need it.
      semantics: PuMer's counts under "official" follow its reference
        code's edge rules: a layer whose prune count rounds to 0 reduces
        nothing (merges included), the keep count is floored at 1 (the
        image CLS token is prunable), merge counts are clamped at what
        matching can merge. "sized": see `protect_cls` and `clamp_merge`.
      arch: "vilt" or "meter": the two reference models' official edge
        rules differ. ViLT's reduces nothing where the prune count rounds
        to 0; METER's reduces wherever the prune *ratio* is positive, and
        keeps its image unpruned where the image merge count is 0 (its
        pruned tokens are only used by the merge).
    """
    if method not in METHODS:
      raise ValueError(
          f"reduce.method={method!r} is not a method; use one of {METHODS}."
      )
    for name, value in (("depth", depth), ("image_len", image_len)):
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive int.")
    # 0 text tokens: a stream of image tokens only (ToMe in METER).
    if not isinstance(text_len, int) or text_len < int(method != "tome"):
      raise ValueError(f"text_len={text_len!r} must be a positive int.")
    layers = check_layers(layers, depth)
    base = cls(method, depth, image_len, text_len)
    if method in ("none", "smres"):
      return base
    if semantics not in SEMANTICS:
      raise ValueError(
          f"reduce.semantics={semantics!r} must be one of {SEMANTICS}.")
    if method == "pumer" and semantics == "official":
      steps = pumer_official_steps(
          layers, image_len, text_len, prune_ratio, image_merge_ratio,
          text_merge_ratio, arch)
    elif method == "pumer":
      steps = pumer_steps(
          layers, image_len, text_len, prune_ratio, image_merge_ratio,
          text_merge_ratio, protect_cls, clamp_merge,
      )
    elif method == "tome":
      steps = tome_steps(
          layers or tuple(range(depth)), image_len + text_len, tome_r,
          tome_schedule, tome_inflection, protect_cls,
      )
    else:
      steps = dynamicvit_steps(layers, image_len, text_len, keep_ratios)
    return dataclasses.replace(base, steps=steps)

  @classmethod
  def from_config(
      cls, reduce: Any, *, depth: int, image_len: int, text_len: int
  ) -> "ReductionSchedule":
    """Builds from a config's `reduce` block (a ConfigDict or mapping)."""
    get = reduce.get if hasattr(reduce, "get") else lambda k, d=None: d
    return cls.build(
        get("method", "none"),
        depth=depth,
        image_len=image_len,
        text_len=text_len,
        layers=tuple(get("layers", ()) or ()),
        prune_ratio=get("prune_ratio", 0.0),
        image_merge_ratio=get("image_merge_ratio", 0.0),
        text_merge_ratio=get("text_merge_ratio", 0.0),
        tome_r=get("tome_r", 0),
        tome_schedule=get("tome_schedule", "constant"),
        tome_inflection=get("tome_inflection", 0.0),
        keep_ratios=tuple(get("keep_ratios", ()) or ()),
        protect_cls=get("protect_cls", True),
        clamp_merge=get("clamp_merge", False),
        semantics=get("semantics", "official"),
    )
