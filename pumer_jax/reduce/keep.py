"""DynamicViT's keep-decision math (the predictor module is in models/).

Training keeps every token and masks the dropped ones (size 0), with a hard
Gumbel-softmax decision whose gradient is the soft one (straight-through), so
shapes stay static. Inference drops tokens with a static top-k instead
(`prune.topk_keep`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def policy_weighted_mean(x: jax.Array, policy: jax.Array) -> jax.Array:
  """Mean of the kept tokens: [B, N, D], [B, N] -> [B, 1, D]."""
  x = jnp.asarray(x)
  policy = jnp.asarray(policy)[..., None].astype(x.dtype)
  total = (x * policy).sum(axis=1, keepdims=True)
  return total / jnp.maximum(policy.sum(axis=1, keepdims=True), 1e-6)


def gumbel_hard_keep(
    rng: jax.Array, log_probs: jax.Array, temperature: float = 1.0
) -> jax.Array:
  """Hard keep decisions with straight-through Gumbel-softmax gradients.

  Args:
    rng: PRNG key.
    log_probs: [B, N, 2] log-probabilities of (keep, drop).
    temperature: Gumbel-softmax temperature.

  Returns:
    [B, N] float, exactly 0 or 1 in the forward pass.
  """
  log_probs = jnp.asarray(log_probs)
  gumbel = jax.random.gumbel(rng, log_probs.shape, log_probs.dtype)
  soft = jax.nn.softmax((log_probs + gumbel) / temperature, axis=-1)[..., 0]
  hard = (soft >= 0.5).astype(soft.dtype)
  return soft + jax.lax.stop_gradient(hard - soft)


def keep_ratio_loss(
    kept_fractions: Sequence[jax.Array], targets: Sequence[float]
) -> jax.Array:
  """DynamicViT's ratio loss: mean over stages of (mean keep - rho_s)^2.

  Args:
    kept_fractions: per stage, [B] the fraction of the original image tokens
      still kept after that stage.
    targets: per stage, rho_s.
  """
  if len(kept_fractions) != len(targets):
    raise ValueError(
        f"{len(kept_fractions)} stages of keep decisions but "
        f"{len(targets)} target ratios."
    )
  if not kept_fractions:
    return jnp.zeros((), jnp.float32)
  terms = [
      jnp.mean((jnp.asarray(frac, jnp.float32) - rho) ** 2) for frac, rho in zip(kept_fractions, targets)
  ]
  return jnp.mean(jnp.stack(terms))
