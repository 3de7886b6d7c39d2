"""Per-method token-count rules: how many tokens each reduction layer removes.

`ReductionSchedule.build` validates its arguments and calls one of these;
they compute PuMer's (sized and official), ToMe's and DynamicViT's counts
exactly as the reference codes do, as Python ints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pumer_jax.reduce.merge import merge_cap

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


def _check_ratio(name: str, value: float) -> float:
  if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
    raise ValueError(f"reduce.{name}={value!r} must be in [0, 1).")
  return float(value)


def check_layers(layers: Sequence[int], depth: int) -> tuple[int, ...]:
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


def _pumer_ratios(layers, p, m, t) -> tuple[float, float, float]:
  """PuMer's p, m, t checked, and layers named wherever a ratio is set."""
  p = _check_ratio("prune_ratio", p)
  m = _check_ratio("image_merge_ratio", m)
  t = _check_ratio("text_merge_ratio", t)
  if not layers and (p or m or t):
    raise ValueError(
        "reduce.layers is empty but PuMer ratios are set; name the layers "
        "that reduce, e.g. reduce.layers=(2, 5, 8)."
    )
  return p, m, t


def pumer_steps(
    layers, image_len, text_len, p, m, t, protect_cls, clamp_merge
) -> tuple[LayerCounts, ...]:
  p, m, t = _pumer_ratios(layers, p, m, t)
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


def pumer_official_steps(
    layers, image_len, text_len, p, m, t, arch
) -> tuple[LayerCounts, ...]:
  """PuMer's counts as its reference code computes them (see `build`)."""
  if arch not in ("vilt", "meter"):
    raise ValueError(f"arch={arch!r} must be 'vilt' or 'meter'.")
  p, m, t = _pumer_ratios(layers, p, m, t)
  steps = []
  image, text = image_len, text_len
  for layer in layers:
    prune = round(p * image)  # Python's round (half to even), as the reference
    # ViLT's reference reduces nothing (merges included) where the prune
    # count rounds to 0; METER's where the prune ratio is 0.
    if (prune if arch == "vilt" else p) == 0:
      continue
    keep = max(image - prune, 1)
    # The image merge count is a fraction of the image *before* pruning.
    merge_image = min(round(m * image), merge_cap(keep, True))
    if arch == "meter" and merge_image == 0:
      keep = image  # METER's reference keeps the unpruned image then
    merge_text = min(round(t * text), merge_cap(text, True))
    steps.append(LayerCounts(
        layer=layer, tokens_in=image + text, image_in=image, text_in=text,
        prune=image - keep, merge_image=merge_image, merge_text=merge_text,
    ))
    image, text = keep - merge_image, text - merge_text
  return tuple(steps)


def tome_steps(
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


def dynamicvit_steps(
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
    # DynamicViT's reference: int(N * rho) of the N original patch tokens,
    # rho cumulative, plus the image CLS token.
    patches = int(rho * (image_len - 1))
    if patches < 1:
      raise ValueError(
          f"reduce.keep_ratios={keep_ratios}: rho={rho} keeps int({rho} * "
          f"{image_len - 1}) = 0 image patches; raise it.")
    keep = patches + 1
    steps.append(LayerCounts(
        layer=layer, tokens_in=image + text_len, image_in=image,
        text_in=text_len, prune=image - keep,
    ))
    image = keep
  return tuple(steps)
