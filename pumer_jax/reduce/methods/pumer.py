"""PuMer (Cao et al., ACL 2023): text-informed image pruning and
modality-aware merging inside the cross-modal layers (DESIGN 4.2, 4.3).

At each reduction layer, after its attention: the image tokens the text
attends to least are pruned, then image tokens are merged with image tokens
and text with text by bipartite matching. Two semantics (DESIGN 3):
"official" (the default) runs PuMer's reference code (`reduce/official.py`),
"sized" this project's size-tracking variant (`merge.py`, `prune.py`).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import ClassVar

import jax.numpy as jnp

from pumer_jax.reduce import official
from pumer_jax.reduce.assign import gather_tokens
from pumer_jax.reduce.config import ReduceConfig, register
from pumer_jax.reduce.counts import (
    LayerCounts,
    check_layers,
    check_layers_given,
    check_ratio,
    layer_runs,
    layer_tuple,
)
from pumer_jax.reduce.merge import bipartite_merge, merge_cap
from pumer_jax.reduce.prune import text_image_scores, topk_index
from pumer_jax.reduce.protocol import (
    TEXT_TO_IMAGE,
    AttentionRule,
    Geometry,
    Needs,
)

SEMANTICS = ("official", "sized")
# The search grid (`pumer_jax.search`): runs of consecutive layers that
# leave the last layer unreduced, times these ratios.
PRUNE_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
MERGE_RATIOS = (0.1, 0.2, 0.3)
TEXT_MERGE_RATIOS = (0.0, 0.2)


@register
@dataclasses.dataclass(frozen=True)
class Pumer(ReduceConfig):
  """PuMer's settings (config key `reduce`, `method="pumer"`).

  Attributes:
    layers: 0-based layers (ViLT) or fusion blocks (METER) that reduce.
    prune_ratio, image_merge_ratio, text_merge_ratio: PuMer's p, m, t,
      each a fraction of the image (text) tokens entering that layer.
    semantics: "official" (the default) runs PuMer's reference code: its
      masked softmax with fractional text masks and no proportional
      attention, the image CLS token prunable, prune scores summed over
      every text row (padding too), plain-mean merges on the raw key
      cosine, no reduction at a layer whose prune count rounds to 0, merge
      counts clamped. There `prop_attn`, `protect_cls` and `clamp_merge` do
      not apply. "sized" is this project's variant: ToMe's size tracking
      and proportional attention, size-weighted merges, padding never
      matched with real tokens, the CLS token kept, scores from the real
      text rows only.
    score_heads: which heads score image tokens: "mean" (the reference's
      `sim_method="mh"`) or "first" (head 0, `"first_head"`, the
      reference's ViLT VQA default).
    protect_cls: (sized) never prune or merge the image CLS token.
    clamp_merge: (sized) clamp merge counts at what bipartite matching can
      merge, as the reference does, instead of raising.
    prop_attn: (sized) proportional attention (log size added to logits).
  """

  method: ClassVar[str] = "pumer"
  label: ClassVar[str] = "PuMer"

  layers: tuple[int, ...] = ()
  prune_ratio: float = 0.0
  image_merge_ratio: float = 0.0
  text_merge_ratio: float = 0.0
  semantics: str = "official"
  score_heads: str = "mean"
  protect_cls: bool = True
  clamp_merge: bool = False
  prop_attn: bool = True

  def __post_init__(self):
    object.__setattr__(self, "layers", layer_tuple(self.layers))
    for name in ("prune_ratio", "image_merge_ratio", "text_merge_ratio"):
      check_ratio(name, getattr(self, name))
    check_layers_given(self.layers, prune_ratio=self.prune_ratio,
                       image_merge_ratio=self.image_merge_ratio,
                       text_merge_ratio=self.text_merge_ratio)
    if self.semantics not in SEMANTICS:
      raise ValueError(
          f"reduce.semantics={self.semantics!r} must be one of {SEMANTICS}: "
          "'official' runs PuMer's reference code, 'sized' this project's "
          "size-tracking variant.")
    if self.score_heads not in official.SCORE_HEADS:
      raise ValueError(
          f"reduce.score_heads={self.score_heads!r} must be one of "
          f"{official.SCORE_HEADS} (PuMer's sim_method mh / first_head).")

  @property
  def official(self) -> bool:
    return self.semantics == "official"

  # --- plan ----------------------------------------------------------------

  def plan(self, geometry: Geometry, train: bool) -> tuple[LayerCounts, ...]:
    del train
    layers = check_layers(self.layers, geometry.depth)
    args = (layers, geometry.image_len, geometry.text_len, self.prune_ratio,
            self.image_merge_ratio, self.text_merge_ratio)
    if self.official:
      return official_steps(*args, geometry.arch)
    return sized_steps(*args, self.protect_cls, self.clamp_merge)

  # --- model ---------------------------------------------------------------

  def needs(self) -> Needs:
    return Needs(probs=TEXT_TO_IMAGE)

  def attention_rule(self) -> AttentionRule:
    if self.official:
      return AttentionRule(proportional=False, official_softmax=True)
    return AttentionRule(proportional=self.prop_attn)

  def reduce_streams(self, counts, text, image, view, ctx):
    del ctx
    if self.official:
      return (*self._official_streams(counts, text, image, view), None)
    scores = text_image_scores(view.text_to_image(), text.size,
                               self.score_heads)  # [B, Li]
    keys = view.image_keys
    if counts.prune:
      index = topk_index(image.size, scores, counts.keep, self.protect_cls)
      image, keys = image.take(index), gather_tokens(keys, index)
    image = bipartite_merge(image.x, keys, image.size, counts.merge_image,
                            protect_first=self.protect_cls,
                            source=image.source)
    text = bipartite_merge(text.x, view.text_keys, text.size,
                           counts.merge_text, protect_first=True,
                           source=text.source)
    return text, image, None

  def _official_streams(self, counts, text, image, view):
    """The reference: all text rows score (after attention dropout), the
    top `keep` kept in descending order, plain-mean merges; the image mask
    reset to 1, the text mask the mean of the merged masks. Where the
    schedule keeps the whole image and merges none of it (METER's
    reference with an image merge count of 0), the image is left as is."""
    if counts.prune or counts.merge_image:
      scores = official.text_image_scores_official(
          view.text_to_image(after_dropout=True), text.size,
          self.score_heads)  # [B, Li]
      image = official.prune_and_merge_image(
          image, view.image_keys, scores, counts.keep, counts.merge_image)
    else:
      image = image._replace(size=jnp.ones_like(image.size, jnp.float32))
    text = official.mean_merge(text.x, view.text_keys, text.size,
                               counts.merge_text, source=text.source)
    return text, image

  # --- tools ---------------------------------------------------------------

  @classmethod
  def search_space(cls, geometry, image_hw):
    del image_hw
    return [cls(layers=layers, prune_ratio=p, image_merge_ratio=m,
                text_merge_ratio=t)
            for layers, p, m, t in itertools.product(
                layer_runs(geometry.depth), PRUNE_RATIOS, MERGE_RATIOS,
                TEXT_MERGE_RATIOS)]

  def describe(self) -> str:
    layers = ",".join(str(l) for l in self.layers)
    sized = "" if self.official else " sized"
    return (f"pumer p{self.prune_ratio:g} m{self.image_merge_ratio:g} "
            f"t{self.text_merge_ratio:g} L{layers}{sized}")


def sized_steps(layers, image_len, text_len, p, m, t, protect_cls,
                clamp_merge) -> tuple[LayerCounts, ...]:
  """PuMer's counts under the sized semantics (DESIGN 4.3)."""
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


def official_steps(layers, image_len, text_len, p, m, t, arch
                   ) -> tuple[LayerCounts, ...]:
  """PuMer's counts as its reference code computes them.

  A layer whose prune count rounds to 0 reduces nothing, merges included
  (ViLT's reference; METER's reduces wherever the prune *ratio* is
  positive, and keeps its image unpruned where the image merge count is
  0, its pruned tokens being only used by the merge); the keep count is
  floored at 1 (the image CLS token is prunable); merge counts are clamped
  at what matching can merge.
  """
  steps = []
  image, text = image_len, text_len
  for layer in layers:
    prune = round(p * image)  # Python's round (half to even), as the reference
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
