"""DynamicViT's keep predictor (DESIGN 4.4), a small Flax module."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from pumer_jax.models.layers import Dtype, dense, layer_norm
from pumer_jax.reduce import gumbel_hard_keep, policy_weighted_mean, topk_keep


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


def sample_keep_policy(predictor: KeepPredictor, rng: jax.Array,
                       x: jax.Array, policy: jax.Array | None, start: int,
                       temperature: float):
  """Training: Gumbel hard keep decisions for the image tokens after CLS.

  The image tokens are `x[:, start:]`, CLS first (ViLT: after the text;
  METER: the whole image stream, start 0). Decisions multiply into
  `policy` ([B, N], ones at first), so a dropped token stays dropped.

  Returns (policy [B, N], kept fraction of the non-CLS image tokens [B]).
  """
  batch, n, _ = x.shape
  if policy is None:
    policy = jnp.ones((batch, n), jnp.float32)
  img_policy = policy[:, start + 1:]
  log_probs = predictor(x[:, start + 1:], img_policy)
  keep = gumbel_hard_keep(rng, log_probs, temperature)
  img_policy = img_policy * keep
  policy = jnp.concatenate([policy[:, :start + 1], img_policy], axis=1)
  return policy, img_policy.mean(axis=-1)


def drop_by_predictor(predictor: KeepPredictor, x: jax.Array,
                      size: jax.Array, source: jax.Array | None, start: int,
                      keep: int):
  """Inference: keep the top `keep` image tokens of `x[:, start:]` by the
  predictor's keep score, CLS always; the tokens before `start` stay.

  Returns (x, size, source) with `start + keep` tokens.
  """
  x_i, s_i = x[:, start:], size[:, start:]
  log_probs = predictor(x_i[:, 1:], jnp.ones(s_i[:, 1:].shape))
  scores = jnp.pad(log_probs[..., 0], ((0, 0), (1, 0)))
  src_i = None if source is None else source[:, start:]
  kept = topk_keep(x_i, s_i, scores, keep, protect_first=True, source=src_i)
  x = jnp.concatenate([x[:, :start], kept[0]], axis=1)
  size = jnp.concatenate([size[:, :start], kept[1]], axis=1)
  if source is not None:
    source = jnp.concatenate([source[:, :start], kept[2]], axis=1)
  return x, size, source
