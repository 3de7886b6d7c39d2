"""`Assignment`: where each input slot goes, computed once, applied to anything.

A reduction decides, per example, which input slots survive as output
slots and which are folded into another output slot. That decision is an
`Assignment` of static shape (every count a Python int); what is done
with it is separate: a size-weighted mean of the tokens (ToMe, PuMer
sized), a plain mean of the tokens and of their masks (PuMer official),
a sum of source maps, an attention-weighted sum (EViT's fused token). One
matching serves them all, as ToMe's `merge`/`unmerge` functions serve
`merge_wavg` and `merge_source`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp

from pumer_jax.reduce.scopes import APPLY, scoped

ScatterForm = Literal["segment_sum", "at_add", "one_hot"]

# The scatter form used when the caller passes `scatter=None`, per backend,
# from benchmarks/merge_scatter.py (benchmarks/results/merge_scatter_cpu.md:
# on CPU the three forms overlap within their spreads, so ToMe's own
# `.at[].add`). Backends not yet measured fall back to it too.
DEFAULT_SCATTER: dict[str, ScatterForm] = {"cpu": "at_add"}


@scoped(APPLY)
def gather_tokens(x: jax.Array, index: jax.Array) -> jax.Array:
  """x[b, index[b, i]] for x: [B, N, ...], index: [B, K] -> [B, K, ...]."""
  return jax.vmap(lambda xb, ib: xb[ib])(x, index)


@scoped(APPLY)
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


def default_scatter(form: ScatterForm | None) -> ScatterForm:
  """`form`, or the measured default of the current backend."""
  return form or DEFAULT_SCATTER.get(jax.default_backend(), "at_add")


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["keep", "src", "dst"], meta_fields=["extra"])
@dataclasses.dataclass(frozen=True)
class Assignment:
  """Input slots -> output slots, static in shape (a pytree; `extra` static).

  Output slot k < K starts as input slot `keep[:, k]`; `extra` more output
  slots start empty; then each input slot `src[:, j]` is folded into
  output slot `dst[:, j]`. Input slots in neither `keep` nor `src` are
  dropped (pruned).

  Attributes:
    keep: [B, K] int input slots that become output slots 0..K-1.
    src: [B, R] int input slots folded into another slot (R may be 0).
    dst: [B, R] int their output slots, in [0, K + extra).
    extra: Python int, output slots that start empty (EViT's fused token).
  """

  keep: jax.Array
  src: jax.Array
  dst: jax.Array
  extra: int = 0

  @property
  def length(self) -> int:
    """Output slots."""
    return self.keep.shape[1] + self.extra

  def _start(self, values: jax.Array) -> jax.Array:
    """The output slots before anything is folded in: [B, length, ...]."""
    out = gather_tokens(values, self.keep)  # [B, K, ...]
    if not self.extra:
      return out
    pad = jnp.zeros((out.shape[0], self.extra) + out.shape[2:], out.dtype)
    return jnp.concatenate([out, pad], axis=1)

  def sum(self, values: jax.Array, scatter: ScatterForm | None = None
          ) -> jax.Array:
    """Each output slot's sum of the input values it holds.

    values: [B, N, ...] -> [B, length, ...], in `values`' dtype.
    """
    out = self._start(values)
    if self.src.shape[1] == 0:
      return out
    return scatter_add(out, self.dst, gather_tokens(values, self.src),
                       default_scatter(scatter))

  def received(self, scatter: ScatterForm | None = None) -> jax.Array:
    """[B, length] float32: how many folded slots each output slot took."""
    zeros = jnp.zeros((self.keep.shape[0], self.length), jnp.float32)
    if self.src.shape[1] == 0:
      return zeros
    return scatter_add(zeros, self.dst, jnp.ones(self.src.shape, jnp.float32),
                       default_scatter(scatter))

  def weighted_mean(self, x: jax.Array, weight: jax.Array,
                    scatter: ScatterForm | None = None
                    ) -> tuple[jax.Array, jax.Array]:
    """Each slot's `weight`-weighted mean of its tokens, and its total weight.

    A slot that received nothing keeps its token exactly (no x*w/w
    rounding); a slot of total weight 0 (padding merged into padding) is 0.

    Args:
      x: [B, N, D]; weight: [B, N] non-negative (token sizes).

    Returns:
      `(x [B, length, D] in x's dtype, weight [B, length] float32)`.
    """
    weight = weight.astype(jnp.float32)
    xf = x.astype(jnp.float32)
    total = self.sum(weight, scatter)  # [B, M]
    weighted = self.sum(xf * weight[..., None], scatter)  # [B, M, D]
    safe = jnp.where(total > 0, total, 1.0)[..., None]
    mean = jnp.where(total[..., None] > 0, weighted / safe, 0.0)
    hits = self.received(scatter)[..., None]
    return jnp.where(hits > 0, mean, self._start(xf)).astype(x.dtype), total

  def mean(self, values: jax.Array, scatter: ScatterForm | None = None
           ) -> jax.Array:
    """Each slot's plain (unweighted) mean of its input values.

    values: [B, N, ...] -> [B, length, ...] float32; a slot of one value
    keeps it exactly.
    """
    values = values.astype(jnp.float32)
    count = self.sum(jnp.ones(values.shape[:2], jnp.float32), scatter)
    count = count.reshape(count.shape + (1,) * (values.ndim - 2))
    return self.sum(values, scatter) / jnp.maximum(count, 1.0)


def keep_only(index: jax.Array) -> Assignment:
  """Pruning: the slots `index` ([B, K]) survive, in that order."""
  empty = jnp.zeros((index.shape[0], 0), index.dtype)
  return Assignment(index, empty, empty)
