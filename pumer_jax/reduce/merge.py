"""ToMe's bipartite soft matching, and its size-weighted merge.

Every reducible sequence travels as `Tokens` (x: [B, N, D], size: [B, N],
the number of original tokens each slot stands for; padding is size 0).
`bipartite_matching` computes where each token goes once, as an
`Assignment`; `bipartite_merge` applies it as a size-weighted mean, so
`sum(size)` and `sum(size * x)` over a sequence are conserved and padding
(size 0) merged anywhere changes nothing. PuMer's official plain-mean
merge applies the same matching differently (`official.mean_merge`).

All token counts (`r`) are Python ints: one compiled program per schedule.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pumer_jax.reduce.assign import Assignment, ScatterForm
from pumer_jax.reduce.scopes import MATCH, scoped
from pumer_jax.reduce.tokens import Tokens

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


def match_scores(
    metric: jax.Array, size: jax.Array | None, protect_first: bool
) -> jax.Array:
  """Cosine scores between set A (even slots) and set B (odd slots).

  With `size`, padding pairs get a large score (merging padding is free)
  and real-padding pairs a large negative one; without it (PuMer's
  reference) padding is scored like any token. A protected first token
  gets -inf.

  Returns: [B, ceil(N/2), floor(N/2)].
  """
  metric = metric.astype(jnp.float32)
  metric = metric / jnp.maximum(
      jnp.linalg.norm(metric, axis=-1, keepdims=True), 1e-12
  )
  scores = jnp.einsum("bic,bjc->bij", metric[:, ::2], metric[:, 1::2])
  if size is not None:
    pad_a = (size[:, ::2] <= 0)[:, :, None]
    pad_b = (size[:, 1::2] <= 0)[:, None, :]
    scores = jnp.where(pad_a & pad_b, _PAD_PAIR, scores)
    scores = jnp.where(pad_a ^ pad_b, _MISMATCH, scores)
  if protect_first:
    scores = scores.at[:, 0, :].set(_PROTECTED)
  return scores


def _check_r(n: int, r: int, protect_first: bool, caller: str) -> None:
  cap = merge_cap(n, protect_first)
  if not isinstance(r, int) or r < 0 or r > cap:
    raise ValueError(
        f"{caller}: r={r!r} must be a Python int in [0, {cap}] for "
        f"{n} tokens (protect_first={protect_first}); compute it with "
        "ReductionSchedule."
    )


@scoped(MATCH)
def bipartite_matching(
    metric: jax.Array, r: int, *, size: jax.Array | None = None,
    protect_first: bool = True,
) -> Assignment:
  """ToMe's matching: which `r` A tokens merge into which B tokens.

  Even slots form set A, odd slots set B. Each A token picks its most
  similar B token (cosine of `metric`); the `r` A tokens with the best
  picks are merged (ties: the earlier A token first). The output order is
  the unmerged A tokens in their original order, then all B tokens, so
  with `protect_first` the CLS token stays at slot 0. Not differentiated.

  Args:
    metric: [B, N, C] similarity features (head-mean attention keys).
    r: Python int in [0, merge_cap(N, protect_first)].
    size: optional [B, N]; given, padding (size 0) is only matched with
      padding (`match_scores`).
    protect_first: never merge slot 0.

  Returns:
    An `Assignment` from N to N - r slots.
  """
  batch, n = metric.shape[:2]
  _check_r(n, r, protect_first, "bipartite_matching")
  scores = jax.lax.stop_gradient(match_scores(metric, size, protect_first))
  best_score = scores.max(axis=-1)  # [B, Na]
  best_dst = scores.argmax(axis=-1)  # [B, Na]
  order = jnp.argsort(-best_score, axis=-1, stable=True)  # [B, Na]
  src_a = order[:, :r]  # [B, r]
  unm_a = jnp.sort(order[:, r:], axis=-1)  # [B, Na - r], original order
  dst_b = jnp.take_along_axis(best_dst, src_a, axis=-1)  # [B, r]
  num_b = n // 2
  b_slots = jnp.broadcast_to(2 * jnp.arange(num_b) + 1, (batch, num_b))
  keep = jnp.concatenate([2 * unm_a, b_slots], axis=1)  # [B, N - r]
  return Assignment(keep=keep, src=2 * src_a, dst=unm_a.shape[1] + dst_b)


def bipartite_merge(
    x: jax.Array,
    metric: jax.Array,
    size: jax.Array,
    r: int,
    *,
    protect_first: bool = True,
    source: jax.Array | None = None,
    scatter: ScatterForm | None = None,
) -> Tokens:
  """Merges `r` tokens by bipartite soft matching (ToMe), size-weighted.

  The `r` A tokens best matched (`bipartite_matching`) are merged into
  their B partners by a size-weighted mean; sizes add up.

  Args:
    x: [B, N, D] tokens.
    metric: [B, N, C] similarity features (head-mean attention keys).
    size: [B, N] float, original tokens per slot; 0 marks padding.
    r: Python int, tokens to remove; 0 returns the inputs unchanged.
    protect_first: never merge slot 0 (the CLS token).
    source: optional [B, N, N0] map of which original tokens each slot holds.
    scatter: scatter form (`assign.scatter_add`); None picks the measured
      default for the current backend.

  Returns:
    `Tokens` with N - r slots (`source` None unless given).
  """
  x, metric, size = jnp.asarray(x), jnp.asarray(metric), jnp.asarray(size)
  source = None if source is None else jnp.asarray(source)
  batch, n, _ = x.shape
  if metric.shape[:2] != (batch, n) or size.shape != (batch, n):
    raise ValueError(
        f"bipartite_merge: x {x.shape}, metric {metric.shape} and size "
        f"{size.shape} must agree on [batch, tokens]."
    )
  _check_r(n, r, protect_first, "bipartite_merge")
  if r == 0:
    return Tokens(x, size, source)
  matching = bipartite_matching(metric, r, size=size,
                                protect_first=protect_first)
  out_x, out_size = matching.weighted_mean(x, size, scatter)  # [B, N - r]
  out_source = None if source is None else matching.sum(source, scatter)
  return Tokens(out_x, out_size, out_source)
