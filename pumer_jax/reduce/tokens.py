"""`Tokens`: one reducible sequence, and everything a reducer carries with it.

Every reduce function takes and returns `Tokens`, whatever is tracked: the
tokens, their sizes, and optionally the source map (which original tokens
each slot holds) and DynamicViT's training-time keep policy. Fields that
are not tracked are None and stay None.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from pumer_jax.reduce.scopes import APPLY, scoped


@scoped(APPLY)
def _gather(a: jax.Array, index: jax.Array) -> jax.Array:
  """a[b, index[b, i]] for a: [B, N, ...], index: [B, K] -> [B, K, ...]."""
  return jax.vmap(lambda ab, ib: ab[ib])(a, index)


class Tokens(NamedTuple):
  """A sequence of tokens and what travels with them.

  Attributes:
    x: [B, N, D] the tokens.
    size: [B, N] float, how many original tokens each slot stands for;
      0 marks padding. Under PuMer's official semantics it holds the
      reference's attention mask instead (fractional for merged text).
    source: optional [B, N, N0], the share of each original token each
      slot holds (ToMe's source map), for pictures and target recall.
    policy: optional [B, N], DynamicViT's differentiable keep mask in
      training (dropped tokens stay in place with policy 0).
  """

  x: jax.Array
  size: jax.Array
  source: jax.Array | None = None
  policy: jax.Array | None = None

  @property
  def length(self) -> int:
    return self.x.shape[1]

  def take(self, index: jax.Array) -> "Tokens":
    """The slots `index` ([B, K] int) of every tracked field, in that order."""
    return Tokens(*(None if a is None else _gather(a, index) for a in self))

  def split(self, at: int) -> tuple["Tokens", "Tokens"]:
    """(the first `at` slots, the rest), for `[text; image]` streams."""
    head = Tokens(*(None if a is None else a[:, :at] for a in self))
    tail = Tokens(*(None if a is None else a[:, at:] for a in self))
    return head, tail

  def join(self, other: "Tokens") -> "Tokens":
    """`self` then `other` along the token axis.

    A keep policy held by one side only is all ones on the other (no policy
    keeps every token); a source map must be held by both or neither.
    """
    if (self.source is None) != (other.source is None):
      raise ValueError("Tokens.join: one side tracks a source map and the "
                       "other does not.")
    policies = (self.policy, other.policy)
    if any(p is not None for p in policies):
      policies = tuple(
          jnp.ones(t.size.shape, jnp.float32) if p is None else p
          for t, p in zip((self, other), policies))
    parts = zip(self._replace(policy=policies[0]),
                other._replace(policy=policies[1]))
    return Tokens(*(None if a is None else jnp.concatenate([a, b], axis=1)
                    for a, b in parts))

  def with_source(self, source: jax.Array | None) -> "Tokens":
    return self._replace(source=source)
