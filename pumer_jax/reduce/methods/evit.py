"""EViT (Liang et al., ICLR 2022, "Not All Patches are What You Need"):
keep the image tokens the image [CLS] attends to most, fuse the rest into
one token (DESIGN 4.4).

At each reduction layer, after its attention: the head-mean attention of the
image [CLS] query on the image patches (after attention dropout, as the
reference) ranks them; the top `ceil(keep_rate * patches)` stay, in
descending attention order after the [CLS]; the others are fused into one
token, the sum of those tokens weighted by that attention (the reference's
`extra_token`, unnormalised), placed after the kept ones; its source map
holds no patch (a summary, not a token that keeps them). Text tokens are
untouched. It is the image-informed counterpart of PuMer's text-informed
pruning: at equal FLOPs, it tells whether the text is what makes pruning
good. In ViLT the image [CLS] is the first image token; in METER the image
stream's first token, scored in the image-side layer of a fusion block.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from pumer_jax.reduce.assign import Assignment, keep_only
from pumer_jax.reduce.config import ReduceConfig, register
from pumer_jax.reduce.counts import (
    LayerCounts,
    check_layers,
    layer_runs,
    layer_tuple,
)
from pumer_jax.reduce.protocol import IMAGE_CLS, AttentionRule, Geometry, Needs
from pumer_jax.reduce.tokens import Tokens

# The search grid: PuMer's (runs of consecutive layers that leave the last
# layer unreduced), times these keep rates.
KEEP_RATES = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)


@register
@dataclasses.dataclass(frozen=True)
class Evit(ReduceConfig):
  """EViT's settings (config key `reduce`, `method="evit"`).

  Attributes:
    layers: 0-based layers (ViLT) or fusion blocks (METER) that reduce
      (the reference's `drop_loc`; 3, 6, 9 of DeiT's 12).
    keep_rate: the fraction of the image patches entering a reduction
      layer that stay (the reference's 0.7): `ceil(keep_rate * patches)`.
    fuse: fuse the inattentive patches into one token (the reference's
      `fuse_token`, on in the paper); off, they are dropped.
  """

  method: ClassVar[str] = "evit"
  label: ClassVar[str] = "EViT"

  layers: tuple[int, ...] = ()
  keep_rate: float = 0.7
  fuse: bool = True

  def __post_init__(self):
    object.__setattr__(self, "layers", layer_tuple(self.layers))
    if (isinstance(self.keep_rate, bool)
        or not isinstance(self.keep_rate, (int, float))
        or not 0.0 < self.keep_rate <= 1.0):
      raise ValueError(f"reduce.keep_rate={self.keep_rate!r} must be in "
                       "(0, 1] (the fraction of image patches kept).")

  def plan(self, geometry: Geometry, train: bool) -> tuple[LayerCounts, ...]:
    del train
    steps, image, text = [], geometry.image_len, geometry.text_len
    for layer in check_layers(self.layers, geometry.depth):
      patches = image - 1
      kept = math.ceil(self.keep_rate * patches)
      if kept >= patches:  # the reference reduces nothing then
        continue
      fuse = int(self.fuse)
      steps.append(LayerCounts(layer=layer, tokens_in=image + text,
                               image_in=image, text_in=text,
                               prune=patches - kept, fuse=fuse))
      image = 1 + kept + fuse
    return tuple(steps)

  def needs(self) -> Needs:
    return Needs(probs=IMAGE_CLS)

  def attention_rule(self) -> AttentionRule:
    # The reference's plain softmax: a fused token weighs as one key.
    return AttentionRule(proportional=False)

  def reduce_streams(self, counts, text, image, view, ctx):
    del ctx
    attn = view.image_cls(after_dropout=True).astype(jnp.float32)
    attn = jax.lax.stop_gradient(attn.mean(axis=1)[:, 1:])  # [B, Li - 1]
    return text, fuse_inattentive(image, attn, counts.keep - 1,
                                  counts.fuse > 0), None

  @classmethod
  def search_space(cls, geometry, image_hw):
    del image_hw
    return [cls(layers=layers, keep_rate=rate)
            for layers, rate in itertools.product(
                layer_runs(geometry.depth), KEEP_RATES)]

  def describe(self) -> str:
    layers = ",".join(str(l) for l in self.layers)
    return (f"evit k{self.keep_rate:g} L{layers}"
            + ("" if self.fuse else " nofuse"))


def fuse_inattentive(image: Tokens, cls_attn: jax.Array, kept: int,
                     fuse: bool) -> Tokens:
  """EViT's reduction of one image stream, the [CLS] at slot 0.

  Args:
    image: [B, Li] image tokens.
    cls_attn: [B, Li - 1] the [CLS] query's head-mean attention on the
      patches (not differentiated).
    kept: Python int, patches kept, in [1, Li - 1).
    fuse: add the fused token (the others' attention-weighted sum).

  Returns:
    `Tokens` of `1 + kept + fuse` slots: the [CLS], the kept patches in
    descending attention, then the fused token. Its size is the number of
    tokens it holds; its source map row is empty: it is EViT's summary of
    the inattentive patches, not a token that keeps any of them, so
    pictures show them as pruned and target recall does not count them.
  """
  batch, n = image.size.shape
  order = jnp.argsort(-cls_attn, axis=-1, stable=True) + 1  # [B, Li - 1]
  cls = jnp.zeros((batch, 1), order.dtype)
  keep = jnp.concatenate([cls, order[:, :kept]], axis=1)  # [B, 1 + kept]
  if not fuse:
    assignment = keep_only(keep)
    return Tokens(*(None if a is None else assignment.sum(a)
                    for a in image))
  rest = order[:, kept:]  # [B, Li - 1 - kept]
  assignment = Assignment(
      keep=keep, src=rest, dst=jnp.full(rest.shape, 1 + kept, rest.dtype),
      extra=1)
  # Kept tokens pass unweighted; the fused ones weigh their attention.
  full_attn = jnp.concatenate([jnp.ones((batch, 1)), cls_attn], axis=1)
  folded = jnp.zeros((batch, n), bool).at[
      jnp.arange(batch)[:, None], rest].set(True)
  weight = jnp.where(folded, full_attn, 1.0)  # [B, Li]
  x = assignment.sum(image.x.astype(jnp.float32) * weight[..., None])
  source = None
  if image.source is not None:
    source = keep_only(keep).sum(image.source)  # [B, 1 + kept, N0]
    source = jnp.concatenate([source, jnp.zeros_like(source[:, :1])], axis=1)
  return Tokens(
      x.astype(image.x.dtype), assignment.sum(image.size.astype(jnp.float32)),
      source)
