"""DynamicViT's keep-decision math, its keep predictor included, as pure jnp.

Training keeps every token and masks the dropped ones (a keep policy of 0),
with a hard Gumbel-softmax decision whose gradient is the soft one
(straight-through), so shapes stay static. Inference drops tokens with a
static top-k instead (`prune.topk_keep`). The predictor's parameters are
declared (`keep_predictor_spec`) and created by the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from pumer_jax.reduce.protocol import Param
from pumer_jax.reduce.scopes import MATCH, SCORE, scoped


def policy_weighted_mean(x: jax.Array, policy: jax.Array) -> jax.Array:
  """Mean of the kept tokens: [B, N, D], [B, N] -> [B, 1, D]."""
  x = jnp.asarray(x)
  policy = jnp.asarray(policy)[..., None].astype(x.dtype)
  total = (x * policy).sum(axis=1, keepdims=True)
  return total / jnp.maximum(policy.sum(axis=1, keepdims=True), 1e-6)


@scoped(MATCH)
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


def _dense(params: dict, x: jax.Array) -> jax.Array:
  kernel = params["kernel"].astype(x.dtype)
  return x @ kernel + params["bias"].astype(x.dtype)


def _layer_norm(params: dict, x: jax.Array, eps: float = 1e-5) -> jax.Array:
  """LayerNorm with float32 statistics, as Flax's `nn.LayerNorm`."""
  xf = x.astype(jnp.float32)
  mean = xf.mean(axis=-1, keepdims=True)
  var = jnp.maximum((xf * xf).mean(axis=-1, keepdims=True) - mean * mean, 0.0)
  y = (xf - mean) * jax.lax.rsqrt(var + eps)
  return (y * params["scale"] + params["bias"]).astype(x.dtype)


def keep_predictor_spec(hidden_size: int) -> dict[str, Any]:
  """The parameters of DynamicViT's keep predictor (`keep_predictor`), as
  `Param`s: names, shapes, initialisers and logical axes."""
  d = hidden_size
  normal = jax.nn.initializers.normal(0.02)
  zeros, ones = jax.nn.initializers.zeros, jax.nn.initializers.ones

  def dense(n_in, n_out, axes):
    return {"kernel": Param((n_in, n_out), normal, axes),
            "bias": Param((n_out,), zeros, (axes[1],))}

  return {
      "in_norm": {"scale": Param((d,), ones, ("embed",)),
                  "bias": Param((d,), zeros, ("embed",))},
      "in_proj": dense(d, d, ("embed", "mlp")),
      "out_0": dense(d, d // 2, ("embed", "mlp")),
      "out_1": dense(d // 2, d // 4, ("mlp", None)),
      "out_2": dense(d // 4, 2, (None, None)),
  }


@scoped(SCORE)
def keep_predictor(params: dict, x: jax.Array, policy: jax.Array
                   ) -> jax.Array:
  """DynamicViT's `PredictorLG`: each token's keep/drop log-probabilities.

  LayerNorm, Linear D->D, GELU; the second half of the features is replaced
  by its policy-weighted mean over the kept tokens (global context), then
  D -> D/2 -> D/4 -> 2 with GELUs, and a log-softmax over (keep, drop).
  GELU is exact (erf), as PyTorch's `nn.GELU()` in the reference.

  Args:
    params: `keep_predictor_spec`'s tree.
    x: [B, N, D] tokens; policy: [B, N] current keep mask.

  Returns:
    [B, N, 2] float32 log-probabilities of (keep, drop).
  """
  gelu = lambda h: jax.nn.gelu(h, approximate=False)
  d = x.shape[-1]
  h = gelu(_dense(params["in_proj"], _layer_norm(params["in_norm"], x)))
  local, glob = h[..., : d // 2], h[..., d // 2:]
  glob = policy_weighted_mean(glob, policy)  # [B, 1, D/2]
  h = jnp.concatenate([local, jnp.broadcast_to(glob, local.shape)], -1)
  h = gelu(_dense(params["out_0"], h))
  h = gelu(_dense(params["out_1"], h))
  logits = _dense(params["out_2"], h)
  return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
