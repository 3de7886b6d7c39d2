"""Hard-concrete gates of L0 regularisation (Louizos et al., 2018): pure jnp.

A gate's distribution is a stretched, clipped binary concrete with location
`log_alpha`: it puts finite mass on exactly 0 and exactly 1, so sampled
masks are really sparse, yet it is differentiable in `log_alpha`. These are
the gates of EfficientVLM's modal-adaptive pruning (DESIGN 4.6).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

BETA = 2.0 / 3.0  # temperature
GAMMA = -0.1  # stretch interval (GAMMA, ZETA)
ZETA = 1.1
EPS = 1e-6  # keeps the uniform sample off 0 and 1
# `log_alpha` is clipped to this range after every optimiser step.
LOG_ALPHA_RANGE = (math.log(0.01), math.log(100.0))


def sample(rng: jax.Array, log_alpha: jax.Array) -> jax.Array:
  """A training mask z in [0, 1], same shape as `log_alpha`.

  u ~ U(eps, 1-eps), s = sigmoid((log u - log(1-u) + log_alpha) / beta),
  z = clip(s * (zeta - gamma) + gamma, 0, 1).
  """
  u = jax.random.uniform(rng, log_alpha.shape, jnp.float32, EPS, 1.0 - EPS)
  s = jax.nn.sigmoid((jnp.log(u) - jnp.log1p(-u) + log_alpha) / BETA)
  return jnp.clip(s * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def prob_nonzero(log_alpha: jax.Array) -> jax.Array:
  """P(z != 0) = sigmoid(log_alpha - beta * log(-gamma / zeta))."""
  return jax.nn.sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA))


def deterministic_mask(log_alpha: jax.Array) -> jax.Array:
  """The inference mask: per row (the last axis is one layer's gates), zero
  the `round(n - sum(prob_nonzero))` gates with the smallest `log_alpha`.

  Returns 0/1 float32 of `log_alpha`'s shape. Under jit: the count depends
  on the data, but only through a comparison, so shapes stay static.
  """
  n = log_alpha.shape[-1]
  expected_zeros = n - prob_nonzero(log_alpha).sum(axis=-1, keepdims=True)
  num_zero = jnp.round(expected_zeros)  # half to even, as Python's round
  rank = jnp.argsort(jnp.argsort(log_alpha, axis=-1), axis=-1)  # 0: smallest
  return (rank >= num_zero).astype(jnp.float32)


def clip_log_alpha(log_alpha: jax.Array) -> jax.Array:
  return jnp.clip(log_alpha, *LOG_ALPHA_RANGE)
