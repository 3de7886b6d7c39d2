"""The one reducer step both models call: a layer's tokens in, fewer out.

`reduce_sequence` dispatches on `ReduceConfig.method` for one sequence whose
first `text_len` tokens are text (ViLT's `[text; image]` stream, or METER's
image stream with `text_len=0`); METER's PuMer, which reduces two streams
at once, calls `pumer_two_stream` directly. The functions carry no
parameters: DynamicViT's predictor is a module (`models/keep_predictor.py`)
that the caller passes in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pumer_jax.models.keep_predictor import (
    KeepPredictor,
    drop_by_predictor,
    sample_keep_policy,
)
from pumer_jax.reduce import ReduceConfig, bipartite_merge, text_informed_prune
from pumer_jax.reduce.official import (
    mean_merge,
    text_image_scores_official,
    top_scoring,
)
from pumer_jax.reduce.schedule import LayerCounts


class Tokens(NamedTuple):
  """One reducible sequence: tokens, their sizes and (optionally) sources."""

  x: jax.Array  # [B, N, D]
  size: jax.Array  # [B, N]
  source: jax.Array | None = None  # [B, N, N0]


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
    score_heads: str = "mean",
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
    score_heads: heads that score the image tokens, "mean" or "first".

  Returns:
    `((text, text_size, text_source), (image, image_size, source))`, with
    `counts.text_out` text and `counts.image_out` image tokens.
  """
  # Carry the image keys through the pruning gather with the tokens.
  width = image.shape[-1]
  carried = jnp.concatenate([image, image_keys.astype(image.dtype)], axis=-1)
  pruned = text_informed_prune(
      carried, image_size, text_to_image, text_size, counts.keep,
      protect_cls=protect_cls, source=source, heads=score_heads,
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


def pumer_two_stream_official(
    text: jax.Array,
    text_mask: jax.Array,
    text_keys: jax.Array,
    image: jax.Array,
    image_keys: jax.Array,
    text_to_image: jax.Array,
    counts: LayerCounts,
    *,
    score_heads: str = "mean",
    source: jax.Array | None = None,
    text_source: jax.Array | None = None,
):
  """PuMer as its reference code runs it (`reduce/official.py`).

  The image tokens are ranked by the attention all text rows pay them
  (`score_heads`: mean over heads or head 0), the top `counts.keep` kept in
  descending score order (CLS not protected), then merged by plain mean on
  their keys (slot 0 protected); their mask is reset to 1. The text is
  merged by plain mean on its keys, padding included, and its mask becomes
  the mean of the merged masks. Where the schedule keeps the whole image
  and merges none of it (METER's reference with an image merge count of
  0), the image is left as it is.

  Args:
    text: [B, Lt, D]; text_mask: [B, Lt] the current, fractional mask.
    text_keys: [B, Lt, Dh]; image: [B, Li, D]; image_keys: [B, Li, Dh].
    text_to_image: [B, H, Lt, Li] attention of text queries on image keys,
      after attention dropout.
    counts: this layer's static counts.
    score_heads: "mean" or "first".
    source, text_source: optional source maps, as `pumer_two_stream`'s.

  Returns:
    `((text, text_mask, text_source), (image, image_mask, source))`.
  """
  if counts.prune or counts.merge_image:
    scores = text_image_scores_official(text_to_image, text_mask,
                                        score_heads)  # [B, Li]
    width = image.shape[-1]
    carried = jnp.concatenate([image, image_keys.astype(image.dtype)], -1)
    kept = top_scoring(carried, scores, counts.keep, source)
    carried, source = kept if source is not None else (kept, None)
    image, image_keys = carried[..., :width], carried[..., width:]
    ones = jnp.ones(image.shape[:2], jnp.float32)
    merged = mean_merge(image, image_keys, ones, counts.merge_image,
                        source=source)
    image = merged[0]
    source = merged[2] if source is not None else None
  image_mask = jnp.ones(image.shape[:2], jnp.float32)  # reset to 1
  merged = mean_merge(text, text_keys, text_mask, counts.merge_text,
                      source=text_source)
  text, text_mask = merged[0], merged[1]
  text_source = merged[2] if text_source is not None else None
  return (text, text_mask, text_source), (image, image_mask, source)


def pumer_single_stream(
    x: jax.Array,
    size: jax.Array,
    keys: jax.Array,
    probs: jax.Array,
    counts: LayerCounts,
    *,
    protect_cls: bool = True,
    source: jax.Array | None = None,
    official: bool = False,
    score_heads: str = "mean",
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
    official: run `pumer_two_stream_official` (`size` is then the
      reference's mask, `probs` taken after attention dropout).
    score_heads: the official scores' heads, "mean" or "first".

  Returns:
    `(x, size, source)` with `counts.text_out + counts.image_out` tokens.
  """
  lt = counts.text_in
  x_t, x_i = _split(x, lt)
  s_t, s_i = _split(size, lt)
  k_t, k_i = _split(keys, lt)
  src_t, src_i = _split(source, lt)
  text_to_image = probs[:, :, :lt, lt:]  # [B, H, Lt, Li]
  if official:
    (x_t, s_t, src_t), (x_i, s_i, src_i) = pumer_two_stream_official(
        x_t, s_t, k_t, x_i, k_i, text_to_image, counts,
        score_heads=score_heads, source=src_i, text_source=src_t)
  else:
    (x_t, s_t, src_t), (x_i, s_i, src_i) = pumer_two_stream(
        x_t, s_t, k_t, x_i, s_i, k_i, text_to_image, counts,
        protect_cls=protect_cls, source=src_i, text_source=src_t,
        score_heads=score_heads)
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


def reduce_sequence(
    reduce: ReduceConfig,
    counts: LayerCounts,
    tokens: Tokens,
    *,
    keys: jax.Array | None,
    text_len: int,
    probs: jax.Array | None = None,
    predictor: KeepPredictor | None = None,
    policy: jax.Array | None = None,
    gumbel_rng: Callable[[], jax.Array] | None = None,
    train: bool = False,
) -> tuple[Tokens, jax.Array | None, jax.Array | None]:
  """Applies `reduce.method` to one sequence at a reduction layer.

  Args:
    reduce: the reducer.
    counts: this layer's static counts.
    tokens: the sequence; its first `text_len` tokens are text.
    keys: [B, N, Dh] head-mean attention keys (the merge metric; None for
      DynamicViT, which prunes before the block's attention).
    text_len: text tokens in front of the image tokens (0: image only).
    probs: [B, H, N, N] this layer's attention probabilities (PuMer;
      after attention dropout under official semantics).
    predictor: DynamicViT's keep predictor for this stage.
    policy: DynamicViT's training keep mask [B, N] so far, or None.
    gumbel_rng: returns the Gumbel key (DynamicViT training only).
    train: DynamicViT masks (Gumbel) in training and drops at inference.

  Returns:
    `(tokens, policy, kept_fraction)`: the reduced sequence (unchanged
    length when DynamicViT masks), the keep mask, and DynamicViT's kept
    fraction of this stage in training (else None).
  """
  method = reduce.method
  if method == "pumer":
    x, size, source = pumer_single_stream(
        tokens.x, tokens.size, keys, probs, counts,
        protect_cls=reduce.protect_cls, source=tokens.source,
        official=reduce.official, score_heads=reduce.score_heads)
    return Tokens(x, size, source), policy, None
  if method == "tome":
    return Tokens(*tome_merge(tokens.x, tokens.size, keys, counts,
                              source=tokens.source)), policy, None
  if method == "dynamicvit":
    if train:
      policy, kept = sample_keep_policy(predictor, gumbel_rng(), tokens.x,
                                        policy, text_len,
                                        reduce.gumbel_temperature)
      return tokens, policy, kept
    return Tokens(*drop_by_predictor(predictor, *tokens, text_len,
                                     counts.keep)), policy, None
  raise ValueError(f"method {method!r} does not reduce inside a layer.")
