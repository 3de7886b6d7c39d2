"""PuMer's reduction as its reference code runs it (`semantics="official"`).

The reference (csarron/PuMer: `vit_vilt.py`'s `Block.forward`,
`modules_meter.py`'s `BertCrossLayer.forward`, `reducer.py`) differs from
this project's sized variant (`merge.py`, `prune.py`) in what it carries
between layers: no token sizes, only an attention *mask* per token, 1 for
image tokens after every reduction and, for text, the mean of the masks a
slot merged (fractional; padding is 0). Here that mask travels in the
`size` slot of the sized functions, so the two semantics share one model.

- Scores: `text_image_scores_official` sums the text->image attention over
  every text row (padded rows too) and divides by the sum of the text
  mask; heads are averaged (`sim_method="mh"`) or head 0 taken
  (`"first_head"`).
- Pruning keeps the top-scoring image tokens in descending score order,
  the image CLS token among them only if it scores high enough.
- Merging (`mean_merge`) is ToMe's matching on the raw cosine of the keys,
  padding included, slot 0 protected, and a plain mean of the current
  tokens: a slot standing for three patches counts as one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pumer_jax.reduce.assign import ScatterForm, gather_tokens
from pumer_jax.reduce.merge import bipartite_matching, merge_cap
from pumer_jax.reduce.scopes import APPLY, MATCH, SCORE, scoped
from pumer_jax.reduce.tokens import Tokens

SCORE_HEADS = ("mean", "first")


@scoped(SCORE)
def text_image_scores_official(
    text_to_image_attn: jax.Array, text_mask: jax.Array, heads: str = "mean"
) -> jax.Array:
  """The reference's prune scores: attention summed over all text rows.

  Args:
    text_to_image_attn: [B, H, Lt, Li] attention probabilities (after
      attention dropout, as the reference reads them).
    text_mask: [B, Lt] the current text mask, possibly fractional.
    heads: "mean" (the reference's `sim_method="mh"`) or "first"
      (`"first_head"`: head 0 alone).

  Returns:
    [B, Li] scores.
  """
  if heads not in SCORE_HEADS:
    raise ValueError(f"score_heads={heads!r} must be one of {SCORE_HEADS}.")
  attn = jnp.asarray(text_to_image_attn).astype(jnp.float32)
  per_row = attn.mean(axis=1) if heads == "mean" else attn[:, 0]  # [B,Lt,Li]
  total = jnp.asarray(text_mask, jnp.float32).sum(axis=-1, keepdims=True)
  return per_row.sum(axis=1) / total


@scoped(MATCH)
def top_scoring(scores: jax.Array, keep: int) -> jax.Array:
  """The slots of the `keep` highest scores, in descending score order,
  none protected (the reference's `torch.topk` over all image tokens).

  Args:
    scores: [B, N] (not differentiated); keep: a Python int in [1, N].

  Returns:
    [B, keep] int slot indices.
  """
  n = scores.shape[1]
  if not isinstance(keep, int) or not 1 <= keep <= n:
    raise ValueError(f"keep={keep!r} must be a Python int in [1, {n}].")
  return jax.lax.top_k(jax.lax.stop_gradient(scores), keep)[1]


@scoped(APPLY)
def mean_merge(
    x: jax.Array,
    metric: jax.Array,
    mask: jax.Array,
    r: int,
    *,
    source: jax.Array | None = None,
    scatter: ScatterForm | None = None,
) -> Tokens:
  """ToMe's matching with a plain mean, as the reference's `merge_wavg`
  called without sizes: each merged slot is the mean of the tokens it
  absorbed and itself, its mask the mean of theirs.

  Args:
    x: [B, N, D] tokens; metric: [B, N, C] keys (head mean).
    mask: [B, N] the reference's attention mask (fractional for merged
      text, 0 for padding); padding is matched like any token (raw cosine).
    r: Python int in [0, merge_cap(N)].
    source: optional [B, N, N0] source map (summed, as the sized merge).
    scatter: scatter form, as `bipartite_merge`'s.

  Returns:
    `Tokens` (x, mask, source) with N - r slots: the unmerged A slots in
    order, then B.
  """
  batch, n, _ = x.shape
  if metric.shape[:2] != (batch, n) or mask.shape != (batch, n):
    raise ValueError(
        f"mean_merge: x {x.shape}, metric {metric.shape} and mask "
        f"{mask.shape} must agree on [batch, tokens].")
  cap = merge_cap(n, True)
  if not isinstance(r, int) or not 0 <= r <= cap:
    raise ValueError(f"mean_merge: r={r!r} must be a Python int in "
                     f"[0, {cap}] for {n} tokens.")
  if r == 0:
    return Tokens(x, mask, source)
  matching = bipartite_matching(metric, r)  # the raw cosine, slot 0 kept
  out_x = matching.mean(x, scatter).astype(x.dtype)  # [B, N - r, D]
  out_mask = matching.mean(mask, scatter)  # [B, N - r]
  out_source = None if source is None else matching.sum(source, scatter)
  return Tokens(out_x, out_mask, out_source)


def prune_and_merge_image(image: Tokens, image_keys: jax.Array,
                          scores: jax.Array, keep: int, merge: int,
                          scatter: ScatterForm | None = None) -> Tokens:
  """The reference's image reduction: the top `keep` by `scores` (CLS not
  protected, descending order), then a plain-mean merge of `merge` of them
  on their keys; the image mask is reset to 1.

  Args:
    image: [B, Li] image tokens; image_keys: [B, Li, C]; scores: [B, Li].
  """
  index = top_scoring(scores, keep)  # [B, keep]
  kept = image.take(index)
  merged = mean_merge(kept.x, gather_tokens(image_keys, index),
                      jnp.ones(kept.x.shape[:2], jnp.float32), merge,
                      source=kept.source, scatter=scatter)
  return merged._replace(size=jnp.ones(merged.x.shape[:2], jnp.float32))
