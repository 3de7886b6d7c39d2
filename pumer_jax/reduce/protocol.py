"""The vocabulary of the reducer protocol: where a method acts, what it needs,
what a layer shows it, and what a model tells it.

Methods (`ReduceConfig` subclasses, `reduce/methods/`) are written against
these types; the models build them (`models/reducer_step.py`). Nothing here
knows any method.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any

import jax


class Where(enum.Enum):
  """Where in a model a method acts."""

  # On the input, before the model (SmRes: the images are resized).
  INPUT = "input"
  # Just before a reduction layer's block (DynamicViT's `pruning_loc`).
  BEFORE_BLOCK = "before_block"
  # Inside a reduction layer, after its attention residual and before its
  # MLP (PuMer, ToMe, EViT). In METER's fusion blocks: after the text-side
  # layer's attention, or after the image-side layer's self-attention for
  # a method that needs the image [CLS] row (`Needs.probs == IMAGE_CLS`).
  AFTER_ATTENTION = "after_attention"


# Which rows and columns of a layer's attention probabilities a method
# scores with (`Needs.probs`).
TEXT_TO_IMAGE = "text_to_image"  # text queries x image keys (PuMer)
IMAGE_CLS = "image_cls"  # the image [CLS] query x image keys (EViT)
PROBS = (TEXT_TO_IMAGE, IMAGE_CLS)


@dataclasses.dataclass(frozen=True)
class Needs:
  """What a method needs from the model at a reduction layer.

  Attributes:
    probs: None (keys at most), TEXT_TO_IMAGE or IMAGE_CLS: the rows of
      the attention probabilities it scores with. Layers that need none run
      the fused attention kernel where the backend has one.
    rng: a PRNG key in training (DynamicViT's Gumbel noise), drawn from
      the model's "gumbel" stream.
  """

  probs: str | None = None
  rng: bool = False

  def __post_init__(self):
    if self.probs is not None and self.probs not in PROBS:
      raise ValueError(f"Needs.probs={self.probs!r} must be None or one of "
                       f"{PROBS}.")


@dataclasses.dataclass(frozen=True)
class AttentionRule:
  """How a model's attention weighs keys while a method runs.

  Attributes:
    proportional: add log(size) to every key's logit (ToMe's proportional
      attention); otherwise a size only masks (0: absent).
    official_softmax: PuMer's reference masked softmax (fractional masks,
      every query keeping its own key, an epsilon); `size` is then its mask.
  """

  proportional: bool = True
  official_softmax: bool = False


@dataclasses.dataclass(frozen=True)
class Geometry:
  """The static shapes a model hands its reducer (every count an int).

  Attributes:
    arch: "vilt" (one `[text; image]` stream) or "meter" (two streams).
    depth: reducible layers: ViLT's layers, METER's fusion blocks.
    image_len: image tokens entering the reducible layers, [CLS] included.
    text_len: padded text tokens.
    patch_size: pixels per patch side (SmRes turns a resolution into tokens).
  """

  arch: str
  depth: int
  image_len: int
  text_len: int
  patch_size: int = 1


@dataclasses.dataclass(frozen=True)
class AttentionView:
  """What a reduction layer's attention shows a reducer.

  Built by the models (`models/reducer_step.py`); the slices and row are
  static. ViLT's view is its self-attention over `[text; image]`; METER's
  is its text-side cross-attention (text queries, image keys) or its
  image-side self-attention (image queries and keys).

  Attributes:
    keys: [B, N, Dh] head-mean keys of the whole reduced sequence (ToMe's
      metric), or None.
    text_keys: [B, Lt, Dh] or None; image_keys: [B, Li, Dh] or None.
    probs, dropped: [B, H, Nq, Nk] probabilities before / after attention
      dropout, or None where the layer ran the fused kernel.
    text_rows, image_cols: where text queries and image keys sit in them.
    cls_row: the image [CLS] query's row, or None.
  """

  keys: jax.Array | None = None
  text_keys: jax.Array | None = None
  image_keys: jax.Array | None = None
  probs: jax.Array | None = None
  dropped: jax.Array | None = None
  text_rows: slice | None = None
  image_cols: slice = dataclasses.field(default_factory=lambda: slice(None))
  cls_row: int | None = None

  def _probs(self, after_dropout: bool, what: str) -> jax.Array:
    probs = self.dropped if after_dropout else self.probs
    if probs is None:
      raise ValueError(
          f"this layer computed no attention probabilities but the reducer "
          f"reads {what}; declare it in the method's needs() "
          f"(Needs(probs={what!r})).")
    return probs

  def text_to_image(self, after_dropout: bool = False) -> jax.Array:
    """[B, H, Lt, Li]: attention of the text queries on the image keys."""
    if self.text_rows is None:
      raise ValueError("this reduction point has no text queries; a method "
                       f"that reads them declares Needs(probs="
                       f"{TEXT_TO_IMAGE!r}).")
    probs = self._probs(after_dropout, TEXT_TO_IMAGE)
    return probs[:, :, self.text_rows, self.image_cols]

  def image_cls(self, after_dropout: bool = False) -> jax.Array:
    """[B, H, Li]: attention of the image [CLS] query on the image keys."""
    if self.cls_row is None:
      raise ValueError("this reduction point has no image [CLS] query; a "
                       f"method that reads it declares Needs(probs="
                       f"{IMAGE_CLS!r}).")
    probs = self._probs(after_dropout, IMAGE_CLS)
    return probs[:, :, self.cls_row, self.image_cols]


@dataclasses.dataclass(frozen=True)
class Context:
  """What a model tells a method at one reduction layer.

  Attributes:
    train: training (DynamicViT masks instead of dropping).
    stage: this layer's index among the schedule's reduction layers.
    params: the method's own parameters for this stage (`param_spec`), or
      None.
    rng: a PRNG key when the method needs one and `train`, else None.
  """

  train: bool = False
  stage: int = 0
  params: Any = None
  rng: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class Param:
  """One parameter a method owns: its shape, initialiser and logical axes.

  `init` is a JAX initialiser, `init(key, shape, dtype)`
  (`jax.nn.initializers`), so the method needs no Flax; the models create
  it under the method's `param_name` and hand it back in `Context.params`.
  """

  shape: tuple[int, ...]
  init: Callable[..., jax.Array]
  axes: tuple[str | None, ...]
