"""Where models meet `pumer_jax.reduce`: the reducer config and the steps
that apply a reducer to a layer's tokens.

The functions here carry no parameters. DynamicViT's predictor has
parameters, so it is a module (`models/dynamicvit.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from pumer_jax.reduce import (
    ReductionSchedule,
    bipartite_merge,
    text_informed_prune,
)
from pumer_jax.reduce.schedule import LayerCounts


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
      self, depth: int, image_len: int, text_len: int
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
    )


def _split(a: jax.Array | None, at: int):
  return (None, None) if a is None else (a[:, :at], a[:, at:])


def _join(a: jax.Array | None, b: jax.Array | None):
  return None if a is None else jnp.concatenate([a, b], axis=1)


def pumer_two_stream(
    text: jax.Array,
    text_size: jax.Array,
    text_keys: jax.Array,
    image: jax.Array,
    image_size: jax.Array,
    image_keys: jax.Array,
    text_to_image: jax.Array,
    counts: LayerCounts,
    *,
    protect_cls: bool = True,
    source: jax.Array | None = None,
    text_source: jax.Array | None = None,
):
  """PuMer on separate text and image sequences, DESIGN 4.3.

  Prunes image tokens by the attention the real text rows pay them, then
  merges within the image tokens and, separately, within the text tokens.

  Args:
    text: [B, Lt, D] text tokens; text_size: [B, Lt].
    text_keys: [B, Lt, Dh] head-mean keys to merge the text on.
    image: [B, Li, D] image tokens, CLS first; image_size: [B, Li].
    image_keys: [B, Li, Dh] head-mean keys to merge the image on.
    text_to_image: [B, H, Lt, Li] attention of text queries on image keys.
    counts: this layer's static counts.
    protect_cls: keep the image CLS token out of pruning/merging.
    source: optional [B, Li, N0] source map of the image tokens.
    text_source: optional [B, Lt, N0] source map of the text tokens.

  Returns:
    `((text, text_size, text_source), (image, image_size, source))`, with
    `counts.text_out` text and `counts.image_out` image tokens.
  """
  # Carry the image keys through the pruning gather with the tokens.
  width = image.shape[-1]
  carried = jnp.concatenate([image, image_keys.astype(image.dtype)], axis=-1)
  pruned = text_informed_prune(
      carried, image_size, text_to_image, text_size, counts.keep,
      protect_cls=protect_cls, source=source,
  )
  carried, image_size = pruned[0], pruned[1]
  source = pruned[2] if source is not None else None
  image, image_keys = carried[..., :width], carried[..., width:]
  image = bipartite_merge(image, image_keys, image_size, counts.merge_image,
                          protect_first=protect_cls, source=source)
  text = bipartite_merge(text, text_keys, text_size, counts.merge_text,
                         protect_first=True, source=text_source)
  with_source = lambda out, src: out if src is not None else out + (None,)
  return with_source(text, text_source), with_source(image, source)


def pumer_single_stream(
    x: jax.Array,
    size: jax.Array,
    keys: jax.Array,
    probs: jax.Array,
    counts: LayerCounts,
    *,
    protect_cls: bool = True,
    source: jax.Array | None = None,
):
  """PuMer on one `[text; image]` stream (ViLT), DESIGN 4.3.

  The text->image block of this layer's self-attention scores the image
  tokens; see `pumer_two_stream`. Modalities are never merged together.

  Args:
    x: [B, Lt + Li, D] tokens, text first.
    size: [B, Lt + Li] token sizes.
    keys: [B, Lt + Li, Dh] head-mean attention keys of this layer.
    probs: [B, H, Lt + Li, Lt + Li] attention probabilities of this layer.
    counts: this layer's static counts (`counts.text_in` = Lt).
    protect_cls: keep the image CLS token (slot Lt) out of pruning/merging.
    source: optional [B, Lt + Li, N0] source map.

  Returns:
    `(x, size, source)` with `counts.text_out + counts.image_out` tokens.
  """
  lt = counts.text_in
  x_t, x_i = _split(x, lt)
  s_t, s_i = _split(size, lt)
  k_t, k_i = _split(keys, lt)
  src_t, src_i = _split(source, lt)
  text_to_image = probs[:, :, :lt, lt:]  # [B, H, Lt, Li]
  (x_t, s_t, src_t), (x_i, s_i, src_i) = pumer_two_stream(
      x_t, s_t, k_t, x_i, s_i, k_i, text_to_image, counts,
      protect_cls=protect_cls, source=src_i, text_source=src_t)
  x = jnp.concatenate([x_t, x_i], axis=1)
  size = jnp.concatenate([s_t, s_i], axis=1)
  source = _join(src_t, src_i) if source is not None else None
  return x, size, source


def tome_merge(
    x: jax.Array,
    size: jax.Array,
    keys: jax.Array,
    counts: LayerCounts,
    *,
    source: jax.Array | None = None,
):
  """ToMe: modality-blind bipartite merge of the whole sequence."""
  out = bipartite_merge(x, keys, size, counts.merge, protect_first=True,
                        source=source)
  return out if source is not None else out + (None,)
