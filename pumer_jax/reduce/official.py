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

from pumer_jax.reduce.merge import (
    DEFAULT_SCATTER,
    ScatterForm,
    bipartite_matching,
    gather_tokens,
    merge_cap,
    scatter_add,
)

SCORE_HEADS = ("mean", "first")


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


def top_scoring(
    x: jax.Array, scores: jax.Array, keep: int,
    source: jax.Array | None = None,
):
  """The `keep` highest-scoring tokens in descending score order, none
  protected (the reference's `torch.topk` over all image tokens).

  Args:
    x: [B, N, D]; scores: [B, N] (not differentiated); keep: in [1, N].
    source: optional [B, N, N0] source map, gathered alongside.

  Returns:
    `x` with `keep` slots, or `(x, source)`.
  """
  n = x.shape[1]
  if not isinstance(keep, int) or not 1 <= keep <= n:
    raise ValueError(f"keep={keep!r} must be a Python int in [1, {n}].")
  _, idx = jax.lax.top_k(jax.lax.stop_gradient(scores), keep)  # [B, keep]
  kept = gather_tokens(x, idx)
  return kept if source is None else (kept, gather_tokens(source, idx))


def cosine_scores_protect_first(metric: jax.Array) -> jax.Array:
  """Raw cosine between even (A) and odd (B) slots, slot 0 never merged.

  Returns: [B, ceil(N/2), floor(N/2)].
  """
  metric = metric.astype(jnp.float32)
  metric = metric / jnp.maximum(
      jnp.linalg.norm(metric, axis=-1, keepdims=True), 1e-12)
  scores = jnp.einsum("bic,bjc->bij", metric[:, ::2], metric[:, 1::2])
  return scores.at[:, 0, :].set(-jnp.inf)


def mean_merge(
    x: jax.Array,
    metric: jax.Array,
    mask: jax.Array,
    r: int,
    *,
    source: jax.Array | None = None,
    scatter: ScatterForm | None = None,
):
  """ToMe's matching with a plain mean, as the reference's `merge_wavg`
  called without sizes: each merged slot is the mean of the tokens it
  absorbed and itself, its mask the mean of theirs.

  Args:
    x: [B, N, D] tokens; metric: [B, N, C] keys (head mean).
    mask: [B, N] the reference's attention mask (fractional for merged
      text, 0 for padding); padding is matched like any token.
    r: Python int in [0, merge_cap(N)].
    source: optional [B, N, N0] source map (summed, as the sized merge).
    scatter: scatter form, as `bipartite_merge`'s.

  Returns:
    `(x, mask)` with N - r slots (unmerged A slots in order, then B), or
    `(x, mask, source)`.
  """
  batch, n, width = x.shape
  if metric.shape[:2] != (batch, n) or mask.shape != (batch, n):
    raise ValueError(
        f"mean_merge: x {x.shape}, metric {metric.shape} and mask "
        f"{mask.shape} must agree on [batch, tokens].")
  cap = merge_cap(n, True)
  if not isinstance(r, int) or not 0 <= r <= cap:
    raise ValueError(f"mean_merge: r={r!r} must be a Python int in "
                     f"[0, {cap}] for {n} tokens.")
  if r == 0:
    return (x, mask) if source is None else (x, mask, source)
  form = scatter or DEFAULT_SCATTER.get(jax.default_backend(), "at_add")
  scores = jax.lax.stop_gradient(cosine_scores_protect_first(metric))
  src_idx, dst_idx, unm_idx = bipartite_matching(scores, r)

  # The mask rides along as one more channel; each group is averaged.
  values = jnp.concatenate(
      [x.astype(jnp.float32), mask.astype(jnp.float32)[..., None]], axis=-1)
  v_a, v_b = values[:, ::2], values[:, 1::2]
  summed = scatter_add(v_b, dst_idx, gather_tokens(v_a, src_idx), form)
  count = scatter_add(jnp.ones(v_b.shape[:2], jnp.float32), dst_idx,
                      jnp.ones(src_idx.shape, jnp.float32), form)  # [B, Nb]
  new_b = jnp.where(count[..., None] > 1, summed / count[..., None], v_b)
  out = jnp.concatenate([gather_tokens(v_a, unm_idx), new_b], axis=1)
  out_x = out[..., :width].astype(x.dtype)  # [B, N - r, D]
  out_mask = out[..., width]  # [B, N - r]
  if source is None:
    return out_x, out_mask
  src_a, src_b = source[:, ::2], source[:, 1::2]
  new_src_b = scatter_add(src_b, dst_idx, gather_tokens(src_a, src_idx), form)
  out_src = jnp.concatenate([gather_tokens(src_a, unm_idx), new_src_b], axis=1)
  return out_x, out_mask, out_src
