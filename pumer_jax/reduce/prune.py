"""Static top-k token pruning, and PuMer's text-informed image pruning.

`keep` is a Python int, so the pruned sequence has a shape known at trace
time. Pruned tokens are dropped, not merged: their size is not carried.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pumer_jax.reduce.scopes import MATCH, SCORE, scoped
from pumer_jax.reduce.tokens import Tokens

# Score given to a protected slot (the CLS token): above any attention mass.
_PROTECTED_SCORE = jnp.inf
# Score given to padding (size 0): below any attention mass, so padding goes
# first and never displaces a real token.
_PADDING_SCORE = -1.0


@scoped(MATCH)
def topk_index(size: jax.Array, scores: jax.Array, keep: int,
               protect_first: bool = True) -> jax.Array:
  """The slots of the `keep` highest scores, in descending score order.

  Padding (size 0) ranks below every real token; with `protect_first`
  slot 0 ranks first. Not differentiated.

  Returns:
    [B, keep] int slot indices.
  """
  scores = jax.lax.stop_gradient(jnp.asarray(scores).astype(jnp.float32))
  scores = jnp.where(jnp.asarray(size) > 0, scores, _PADDING_SCORE)
  if protect_first:
    scores = scores.at[:, 0].set(_PROTECTED_SCORE)
  return jax.lax.top_k(scores, keep)[1]


def topk_keep(
    x: jax.Array,
    size: jax.Array,
    scores: jax.Array,
    keep: int,
    *,
    protect_first: bool = True,
    source: jax.Array | None = None,
) -> Tokens:
  """Keeps the `keep` highest-scoring tokens, in descending score order.

  Args:
    x: [B, N, D] tokens.
    size: [B, N] original tokens per slot; 0 marks padding.
    scores: [B, N] importance; higher is kept first. Not differentiated.
    keep: Python int in [1, N]; `keep == N` returns the inputs unchanged.
    protect_first: always keep slot 0 (the CLS token), and keep it first.
    source: optional [B, N, N0] source map, gathered alongside.

  Returns:
    `Tokens` with `keep` slots.
  """
  tokens = Tokens(jnp.asarray(x), jnp.asarray(size),
                  None if source is None else jnp.asarray(source))
  n = tokens.length
  if not isinstance(keep, int) or not 1 <= keep <= n:
    raise ValueError(
        f"keep={keep!r} must be a Python int in [1, {n}] for {n} tokens; "
        "compute it with ReductionSchedule."
    )
  if keep == n:
    return tokens
  return tokens.take(topk_index(tokens.size, scores, keep, protect_first))


@scoped(SCORE)
def text_image_scores(
    text_to_image_attn: jax.Array, text_size: jax.Array, heads: str = "mean"
) -> jax.Array:
  """Attention that the real text tokens pay to each image token.

  Mean over heads (or head 0 alone, `heads="first"`) and over text query
  rows with size > 0; padded text rows do not vote (PuMer's reference code
  lets them: `official.text_image_scores_official`).

  Args:
    text_to_image_attn: [B, H, Lt, Li] attention probabilities.
    text_size: [B, Lt] text token sizes; 0 marks padding.
    heads: "mean" or "first".

  Returns:
    [B, Li] scores.
  """
  text_to_image_attn = jnp.asarray(text_to_image_attn)
  real = (jnp.asarray(text_size) > 0).astype(jnp.float32)  # [B, Lt]
  attn = text_to_image_attn.astype(jnp.float32)
  if heads not in ("mean", "first"):
    raise ValueError(f"heads={heads!r} must be 'mean' or 'first'.")
  per_row = attn.mean(axis=1) if heads == "mean" else attn[:, 0]  # [B,Lt,Li]
  total = jnp.einsum("bt,bti->bi", real, per_row)
  return total / jnp.maximum(real.sum(axis=-1, keepdims=True), 1.0)


def text_informed_prune(
    x: jax.Array,
    size: jax.Array,
    text_to_image_attn: jax.Array,
    text_size: jax.Array,
    keep: int,
    *,
    protect_cls: bool = True,
    source: jax.Array | None = None,
    heads: str = "mean",
) -> Tokens:
  """PuMer's pruning: keeps the image tokens the text attends to most.

  Args:
    x: [B, Li, D] image tokens, the image CLS token at slot 0.
    size: [B, Li] image token sizes.
    text_to_image_attn: [B, H, Lt, Li] attention from text queries to these
      image keys (ViLT: the text-rows x image-columns block of self-attention;
      METER: the text-to-image cross-attention).
    text_size: [B, Lt] text token sizes; 0 marks padding.
    keep: Python int, image tokens kept (CLS included).
    protect_cls: always keep the image CLS token.
    source: optional [B, Li, N0] source map.
    heads: which heads score, "mean" or "first" (`text_image_scores`).

  Returns:
    `Tokens` with `keep` image tokens.
  """
  x, text_to_image_attn = jnp.asarray(x), jnp.asarray(text_to_image_attn)
  if text_to_image_attn.shape[-1] != x.shape[1]:
    raise ValueError(
        f"text_to_image_attn has {text_to_image_attn.shape[-1]} image "
        f"columns but x has {x.shape[1]} image tokens."
    )
  scores = text_image_scores(text_to_image_attn, text_size, heads)
  return topk_keep(
      x, size, scores, keep, protect_first=protect_cls, source=source
  )
