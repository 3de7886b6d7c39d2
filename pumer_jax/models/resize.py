"""Resizing position tables exactly as the PyTorch checkpoints did.

ViLT interpolated its patch position embeddings bilinearly with corners
aligned; CLIP (and so METER) bicubically with PyTorch's a = -0.75. A model
run at another resolution than its table must resize the same way, or the
checkpoint's numbers are not reproduced.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def align_corners_resize(
    grid: jax.Array, out_shape: Sequence[int]
) -> jax.Array:
  """Bilinear resize of [h, w, D] with align_corners=True (as PyTorch's).

  `jax.image.resize` samples half-pixel centres; ViLT's position embeddings
  were interpolated with corners aligned, so checkpoints expect this.
  """

  def weights(n_in: int, n_out: int) -> jax.Array:
    if n_out == 1 or n_in == 1:
      pos = jnp.zeros((n_out,), jnp.float32)
    else:
      pos = jnp.arange(n_out, dtype=jnp.float32) * ((n_in - 1) / (n_out - 1))
    lo = jnp.clip(jnp.floor(pos), 0, n_in - 1).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    return (jax.nn.one_hot(lo, n_in) * (1 - frac)[:, None]
            + jax.nn.one_hot(hi, n_in) * frac[:, None])  # [n_out, n_in]

  h_out, w_out = out_shape
  wh = weights(grid.shape[0], h_out)
  ww = weights(grid.shape[1], w_out)
  return jnp.einsum("ih,jw,hwd->ijd", wh, ww, grid)  # [h_out, w_out, D]


def bicubic_resize(grid: jax.Array, out_shape: Sequence[int]) -> jax.Array:
  """Bicubic resize of [h, w, D] exactly as PyTorch's (a = -0.75).

  PyTorch's `interpolate(mode="bicubic", align_corners=False)` samples
  half-pixel centres with the Keys kernel at a = -0.75 and clamps the taps
  at the border; `jax.image.resize` uses a = -0.5. CLIP's position
  embeddings (Hugging Face `interpolate_pos_encoding`, METER at 288/384) are
  resized this way, so checkpoints expect it.
  """
  a = -0.75

  def near(t):  # |t| <= 1
    return ((a + 2) * t - (a + 3)) * t * t + 1

  def far(t):  # 1 < |t| < 2
    return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a

  def weights(n_in: int, n_out: int) -> jax.Array:
    pos = (jnp.arange(n_out, dtype=jnp.float32) + 0.5) * (n_in / n_out) - 0.5
    base = jnp.floor(pos)
    t = pos - base
    coeffs = (far(t + 1), near(t), near(1 - t), far(2 - t))
    out = jnp.zeros((n_out, n_in), jnp.float32)
    for k, c in enumerate(coeffs):
      idx = jnp.clip(base.astype(jnp.int32) - 1 + k, 0, n_in - 1)
      out = out + jax.nn.one_hot(idx, n_in) * c[:, None]
    return out  # [n_out, n_in]

  h_out, w_out = out_shape
  wh = weights(grid.shape[0], h_out)
  ww = weights(grid.shape[1], w_out)
  return jnp.einsum("ih,jw,hwd->ijd", wh, ww, grid.astype(jnp.float32))
