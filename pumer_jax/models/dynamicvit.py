"""DynamicViT's keep predictor (DESIGN 4.4), a small Flax module."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from pumer_jax.models.layers import Dtype, dense, layer_norm
from pumer_jax.reduce import policy_weighted_mean


class KeepPredictor(nn.Module):
  """Scores each token's keep/drop log-probabilities from local + global cues.

  LayerNorm, Linear D->D, GELU; the second half of the features is replaced
  by its policy-weighted mean over the kept tokens (global context), then
  D -> D/2 -> D/4 -> 2 with GELUs, and a log-softmax over (keep, drop).
  """

  hidden_size: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, policy: jax.Array) -> jax.Array:
    """x: [B, N, D] tokens; policy: [B, N] current keep mask.

    Returns [B, N, 2] log-probabilities of (keep, drop).
    """
    d = self.hidden_size
    h = layer_norm(1e-5, "in_norm", self.dtype)(x)
    h = jax.nn.gelu(dense(d, ("embed", "mlp"), "in_proj", dtype=self.dtype)(h))
    local, glob = h[..., : d // 2], h[..., d // 2:]
    glob = policy_weighted_mean(glob, policy)  # [B, 1, D/2]
    h = jnp.concatenate([local, jnp.broadcast_to(glob, local.shape)], -1)
    h = jax.nn.gelu(dense(d // 2, ("embed", "mlp"), "out_0",
                          dtype=self.dtype)(h))
    h = jax.nn.gelu(dense(d // 4, ("mlp", None), "out_1",
                          dtype=self.dtype)(h))
    logits = dense(2, (None, None), "out_2", dtype=self.dtype)(h)
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
