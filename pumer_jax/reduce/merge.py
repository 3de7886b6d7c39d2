"""ToMe's bipartite soft matching as a static-shape, size-weighted merge.

Every reducible sequence travels as tokens `x: [B, N, D]` with `size: [B, N]`,
the number of original tokens each slot stands for (padding is size 0). A merge
is a size-weighted mean, so `sum(size)` and `sum(size * x)` over a sequence are
conserved, and padding (size 0) merged anywhere changes nothing.

All token counts (`r`) are Python ints: one compiled program per schedule.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

ScatterForm = Literal["segment_sum", "at_add", "one_hot"]

# The scatter form used when the caller passes `scatter=None`, per backend,
# from benchmarks/merge_scatter.py (benchmarks/results/merge_scatter_cpu.md).
# On CPU all three forms cost 0.5-0.75% of a ViT-B layer with overlapping
# spreads, so none is reliably fastest: "at_add", ToMe's own form. Backends
# not yet measured (GPU, TPU) fall back to it too.
DEFAULT_SCATTER: dict[str, ScatterForm] = {"cpu": "at_add"}

# Sentinels for the A->B score matrix. Cosine scores lie in [-1, 1].
_PAD_PAIR = 1e4  # padding into padding: free, preferred above any real pair
_MISMATCH = -1e4  # real into padding or padding into real: never preferred
_PROTECTED = -jnp.inf  # a protected token (CLS) is merged last of all


def merge_cap(n: int, protect_first: bool = True) -> int:
  """The largest `r` bipartite matching can merge out of `n` tokens."""
  num_a = (n + 1) // 2
  return max(0, min(num_a - int(protect_first), n // 2))


def init_source(batch: int, n: int, dtype=jnp.float32) -> jax.Array:
  """Source map of an unreduced sequence: slot i holds original token i."""
  return jnp.broadcast_to(jnp.eye(n, dtype=dtype), (batch, n, n))  # [B, N, N0]


def scatter_add(
    base: jax.Array, index: jax.Array, values: jax.Array, form: ScatterForm
) -> jax.Array:
  """`base[b, index[b, i]] += values[b, i]` for every b, i, in a chosen form.

  Args:
    base: [B, M, ...] destination.
    index: [B, R] int, each in [0, M).
    values: [B, R, ...] rows to add.
    form: "segment_sum" (`jax.ops.segment_sum` per batch row), "at_add"
      (`.at[].add`), or "one_hot" (a one-hot matmul, often fastest on
      accelerators where scatters serialise).
  """
  num = base.shape[1]
  if form == "segment_sum":
    summed = jax.vmap(
        lambda v, i: jax.ops.segment_sum(v, i, num_segments=num)
    )(values, index)
    return base + summed
  if form == "at_add":
    batch = jnp.arange(base.shape[0])[:, None]
    return base.at[batch, index].add(values)
  if form == "one_hot":
    one_hot = jax.nn.one_hot(index, num, dtype=values.dtype)  # [B, R, M]
    return base + jnp.einsum("brm,br...->bm...", one_hot, values)
  raise ValueError(
      f"scatter={form!r} is not a scatter form; use one of "
      "'segment_sum', 'at_add', 'one_hot'."
  )


def gather_tokens(x: jax.Array, index: jax.Array) -> jax.Array:
  """x[b, index[b, i]] for x: [B, N, ...], index: [B, K] -> [B, K, ...]."""
  return jax.vmap(lambda xb, ib: xb[ib])(x, index)


def match_scores(
    metric: jax.Array, size: jax.Array, protect_first: bool
) -> jax.Array:
  """Cosine scores between set A (even slots) and set B (odd slots).

  Padding pairs get a large score (merging padding is free), real-padding
  pairs a large negative one, and a protected first token -inf.

  Returns: [B, ceil(N/2), floor(N/2)].
  """
  metric = metric.astype(jnp.float32)
  metric = metric / jnp.maximum(
      jnp.linalg.norm(metric, axis=-1, keepdims=True), 1e-12
  )
  scores = jnp.einsum("bic,bjc->bij", metric[:, ::2], metric[:, 1::2])
  pad_a = (size[:, ::2] <= 0)[:, :, None]
  pad_b = (size[:, 1::2] <= 0)[:, None, :]
  scores = jnp.where(pad_a & pad_b, _PAD_PAIR, scores)
  scores = jnp.where(pad_a ^ pad_b, _MISMATCH, scores)
  if protect_first:
    scores = scores.at[:, 0, :].set(_PROTECTED)
  return scores


def bipartite_matching(scores: jax.Array, r: int):
  """ToMe's matching on A->B scores: which `r` A tokens go where.

  Each A token picks its best B token; the `r` A tokens with the best
  picks are merged (ties: the earlier A token first).

  Args:
    scores: [B, Na, Nb] float32.
    r: Python int, tokens to merge.

  Returns:
    `(src_idx [B, r], dst_idx [B, r], unm_idx [B, Na - r])`: the merged A
    slots, their B partners, and the unmerged A slots in original order.
  """
  best_score = scores.max(axis=-1)  # [B, Na]
  best_dst = scores.argmax(axis=-1)  # [B, Na]
  order = jnp.argsort(-best_score, axis=-1, stable=True)  # [B, Na]
  src_idx = order[:, :r]  # [B, r]
  unm_idx = jnp.sort(order[:, r:], axis=-1)  # [B, Na - r], original order
  dst_idx = jnp.take_along_axis(best_dst, src_idx, axis=-1)  # [B, r]
  return src_idx, dst_idx, unm_idx


def bipartite_merge(
    x: jax.Array,
    metric: jax.Array,
    size: jax.Array,
    r: int,
    *,
    protect_first: bool = True,
    source: jax.Array | None = None,
    scatter: ScatterForm | None = None,
):
  """Merges `r` tokens by bipartite soft matching (ToMe), size-weighted.

  Even slots form set A, odd slots set B. Each A token picks its most similar
  B token (cosine of `metric`); the `r` A tokens with the best matches are
  merged into their partners by a size-weighted mean. The output is the
  unmerged A tokens in their original order, then all B tokens, so with
  `protect_first` the CLS token stays at slot 0.

  Args:
    x: [B, N, D] tokens.
    metric: [B, N, C] similarity features (head-mean attention keys).
    size: [B, N] float, original tokens per slot; 0 marks padding.
    r: Python int, tokens to remove; 0 returns the inputs unchanged.
    protect_first: never merge slot 0 (the CLS token).
    source: optional [B, N, N0] map of which original tokens each slot holds.
    scatter: scatter form (see `scatter_add`); None picks the measured
      default for the current backend.

  Returns:
    `(x, size)`, each with N - r slots, or `(x, size, source)` when `source`
    is given.
  """
  x, metric, size = jnp.asarray(x), jnp.asarray(metric), jnp.asarray(size)
  source = None if source is None else jnp.asarray(source)
  batch, n, _ = x.shape
  if metric.shape[:2] != (batch, n) or size.shape != (batch, n):
    raise ValueError(
        f"bipartite_merge: x {x.shape}, metric {metric.shape} and size "
        f"{size.shape} must agree on [batch, tokens]."
    )
  cap = merge_cap(n, protect_first)
  if not isinstance(r, int) or r < 0 or r > cap:
    raise ValueError(
        f"bipartite_merge: r={r!r} must be a Python int in [0, {cap}] for "
        f"{n} tokens (protect_first={protect_first}); compute it with "
        "ReductionSchedule."
    )
  if r == 0:
    return (x, size) if source is None else (x, size, source)
  form = scatter or DEFAULT_SCATTER.get(jax.default_backend(), "at_add")
  scores = jax.lax.stop_gradient(match_scores(metric, size, protect_first))
  src_idx, dst_idx, unm_idx = bipartite_matching(scores, r)

  size = size.astype(jnp.float32)
  xf = x.astype(jnp.float32)
  x_a, x_b = xf[:, ::2], xf[:, 1::2]
  s_a, s_b = size[:, ::2], size[:, 1::2]

  src_s = gather_tokens(s_a, src_idx)  # [B, r]
  src_xs = gather_tokens(x_a, src_idx) * src_s[..., None]  # [B, r, D]
  new_s_b = scatter_add(s_b, dst_idx, src_s, form)  # [B, Nb]
  weighted_b = scatter_add(x_b * s_b[..., None], dst_idx, src_xs, form)
  hits = scatter_add(
      jnp.zeros_like(s_b), dst_idx, jnp.ones_like(src_s), form
  )  # [B, Nb], merges received
  mean_b = jnp.where(
      new_s_b[..., None] > 0,
      weighted_b / jnp.where(new_s_b > 0, new_s_b, 1.0)[..., None],
      0.0,
  )
  # Slots that received nothing keep their exact values (no x*s/s rounding).
  new_x_b = jnp.where(hits[..., None] > 0, mean_b, x_b)

  out_x = jnp.concatenate([gather_tokens(x_a, unm_idx), new_x_b], axis=1)
  out_s = jnp.concatenate([gather_tokens(s_a, unm_idx), new_s_b], axis=1)
  out_x = out_x.astype(x.dtype)  # [B, N - r, D]
  if source is None:
    return out_x, out_s
  src_a, src_b = source[:, ::2], source[:, 1::2]
  new_src_b = scatter_add(src_b, dst_idx, gather_tokens(src_a, src_idx), form)
  out_src = jnp.concatenate([gather_tokens(src_a, unm_idx), new_src_b], axis=1)
  return out_x, out_s, out_src  # [B, N - r, N0]
