"""ReductionSchedule: every token count of a reduced model, as Python ints.

The schedule is computed once from the config and the static input lengths,
before tracing, so each reducer runs with shapes known at compile time and one
compiled program serves every batch. Reductions happen inside a layer (after
the attention residual, before the MLP), so "entering layer l" means the
counts that layer's attention sees.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from pumer_jax.reduce.merge import merge_cap

METHODS = ("none", "pumer", "tome", "dynamicvit", "smres")
TOME_SCHEDULES = ("constant", "ramp", "list")


@dataclasses.dataclass(frozen=True)
class LayerCounts:
  """Token counts of one reduction layer.

  For modality-aware methods (pumer, dynamicvit) `image_in`/`text_in` are the
  image tokens (CLS included) and padded text tokens entering the layer;
  `prune` image tokens are dropped (`keep` stay), then `merge_image` image
  and `merge_text` text tokens are merged away. For ToMe (modality-blind)
  only `tokens_in` and `merge` apply and the image/text fields are None.
  """

  layer: int
  tokens_in: int
  image_in: int | None = None
  text_in: int | None = None
  prune: int = 0
  merge_image: int = 0
  merge_text: int = 0
  merge: int = 0

  @property
  def keep(self) -> int | None:
    return None if self.image_in is None else self.image_in - self.prune

  @property
  def image_out(self) -> int | None:
    return None if self.image_in is None else self.keep - self.merge_image

  @property
  def text_out(self) -> int | None:
    return None if self.text_in is None else self.text_in - self.merge_text

  @property
  def tokens_out(self) -> int:
    removed = self.prune + self.merge_image + self.merge_text + self.merge
    return self.tokens_in - removed


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
    """Sum over layers of tokens entering it, relative to the unreduced model.

    A quick, token-linear cost proxy; benchmarks use compiled FLOPs instead.
    """
    full = self.depth * (self.image_len + self.text_len)
    return sum(self.tokens_in(l) for l in range(self.depth)) / full

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
        non-CLS image tokens kept after each stage (decreasing).
      protect_cls: the image CLS token is never pruned or merged (the text
        CLS token never is, whatever this says).
      clamp_merge: PuMer merge counts past what bipartite matching can merge
        are clamped to it, as PuMer's reference code (DESIGN 4.3), instead
        of an error. Off by default, so a mistyped ratio cannot be silently
        lowered; METER's reference SNLI-VE/NLVR2 settings (m=0.5) need it.
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
    layers = _check_layers(layers, depth)
    base = cls(method, depth, image_len, text_len)
    if method in ("none", "smres"):
      return base
    if method == "pumer":
      steps = _pumer_steps(
          layers, image_len, text_len, prune_ratio, image_merge_ratio,
          text_merge_ratio, protect_cls, clamp_merge,
      )
    elif method == "tome":
      steps = _tome_steps(
          layers or tuple(range(depth)), image_len + text_len, tome_r,
          tome_schedule, tome_inflection, protect_cls,
      )
    else:
      steps = _dynamicvit_steps(layers, image_len, text_len, keep_ratios)
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
    )


def _check_ratio(name: str, value: float) -> float:
  if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
    raise ValueError(f"reduce.{name}={value!r} must be in [0, 1).")
  return float(value)


def _check_layers(layers: Sequence[int], depth: int) -> tuple[int, ...]:
  layers = tuple(layers)
  for layer in layers:
    if not isinstance(layer, int) or not 0 <= layer < depth:
      raise ValueError(
          f"reduce.layers={layers}: layer {layer!r} is outside [0, {depth}) "
          f"for a model of depth {depth} (layers are 0-based)."
      )
  if len(set(layers)) != len(layers):
    raise ValueError(f"reduce.layers={layers} has duplicate layers.")
  return tuple(sorted(layers))


def _pumer_steps(
    layers, image_len, text_len, p, m, t, protect_cls, clamp_merge
) -> tuple[LayerCounts, ...]:
  p = _check_ratio("prune_ratio", p)
  m = _check_ratio("image_merge_ratio", m)
  t = _check_ratio("text_merge_ratio", t)
  if not layers and (p or m or t):
    raise ValueError(
        "reduce.layers is empty but PuMer ratios are set; name the layers "
        "that reduce, e.g. reduce.layers=(2, 5, 8)."
    )
  steps = []
  image, text = image_len, text_len
  for layer in layers:
    # Python's round (half to even), as PuMer's reference code.
    prune = round(p * image)
    keep = image - prune
    if keep < 1 + int(protect_cls):
      raise ValueError(
          f"reduce.prune_ratio={p} leaves {keep} image tokens at layer "
          f"{layer}; lower it or use fewer reduce.layers."
      )
    merge_image, merge_text = round(m * image), round(t * text)
    if clamp_merge:
      merge_image = min(merge_image, merge_cap(keep, protect_cls))
      merge_text = min(merge_text, merge_cap(text, True))
    # The text CLS token is always protected; `protect_cls` is the image's.
    for name, count, n, ratio, protect in (
        ("image_merge_ratio", merge_image, keep, m, protect_cls),
        ("text_merge_ratio", merge_text, text, t, True),
    ):
      cap = merge_cap(n, protect)
      if count > cap:
        raise ValueError(
            f"reduce.{name}={ratio} asks to merge {count} tokens at layer "
            f"{layer}, but bipartite matching can merge at most {cap} of "
            f"{n}; lower reduce.{name} or set reduce.clamp_merge=True."
        )
    steps.append(LayerCounts(
        layer=layer, tokens_in=image + text, image_in=image, text_in=text,
        prune=prune, merge_image=merge_image, merge_text=merge_text,
    ))
    image, text = keep - merge_image, text - merge_text
  return tuple(steps)


def _tome_steps(
    layers, tokens, r, schedule, inflection, protect_cls
) -> tuple[LayerCounts, ...]:
  if schedule not in TOME_SCHEDULES:
    raise ValueError(
        f"reduce.tome_schedule={schedule!r} must be one of {TOME_SCHEDULES}."
    )
  n = len(layers)
  if schedule == "list":
    rs = tuple(r) if isinstance(r, Sequence) else ()
    if len(rs) != n:
      raise ValueError(
          f"reduce.tome_r={r!r} must list one r per reduce layer ({n}) when "
          "reduce.tome_schedule='list'."
      )
  else:
    if not isinstance(r, int):
      raise ValueError(
          f"reduce.tome_r={r!r} must be an int for tome_schedule="
          f"{schedule!r}; use tome_schedule='list' for one r per layer."
      )
    if schedule == "constant" or n == 1:
      rs = (r,) * n
    else:
      # ToMe's linear schedule (its `parse_r`), arithmetic included: the
      # first layer's r is truncated to an int *before* interpolating, the
      # last is 2r minus it, and each step is truncated again.
      lo = int(r * (1.0 - inflection))
      step = (2 * r - 2 * lo) / (n - 1)
      rs = tuple(int(lo + step * i) for i in range(n))
  if any(not isinstance(v, int) or v < 0 for v in rs):
    raise ValueError(f"reduce.tome_r={r!r} must be non-negative ints.")
  steps = []
  for layer, r_layer in zip(layers, rs):
    merge = min(r_layer, merge_cap(tokens, protect_cls))
    steps.append(LayerCounts(layer=layer, tokens_in=tokens, merge=merge))
    tokens -= merge
  return tuple(steps)


def _dynamicvit_steps(
    layers, image_len, text_len, keep_ratios
) -> tuple[LayerCounts, ...]:
  keep_ratios = tuple(keep_ratios)
  if len(keep_ratios) != len(layers):
    raise ValueError(
        f"reduce.keep_ratios={keep_ratios} must give one ratio per reduce "
        f"layer {tuple(layers)}."
    )
  steps = []
  image = image_len
  previous = 1.0
  for layer, rho in zip(layers, keep_ratios):
    if not isinstance(rho, (int, float)) or not 0.0 < rho <= previous:
      raise ValueError(
          f"reduce.keep_ratios={keep_ratios}: each ratio must be in (0, 1] "
          "and no larger than the one before (the fraction of the original "
          "image tokens kept after each stage)."
      )
    previous = rho
    keep = max(1, round(rho * (image_len - 1))) + 1  # + the image CLS token
    steps.append(LayerCounts(
        layer=layer, tokens_in=image + text_len, image_in=image,
        text_in=text_len, prune=image - keep,
    ))
    image = keep
  return tuple(steps)
