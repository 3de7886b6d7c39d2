"""How pixels become patch tokens: ViLT's linear projection, or a conv stem.

"linear" is ViLT's (and ViT's) patch embedding, one stride-`patch` conv.
"conv" replaces it with the convolutional stem of Xiao et al., "Early
Convolutions Help Transformers See Better" (NeurIPS 2021): log2(patch)
3x3 stride-2 convolutions, each normalised and activated, then a 1x1
projection to the width. Both give one token per patch of the same grid, so
every reducer, schedule and FLOP count downstream sees the same token
layout; only how a token is computed from its pixels differs. The stem is
for models trained from scratch on small data (the grid12 laboratory, whose
transformer must assemble shapes across patches that no Hugging Face
weights taught it to see); imported weights are always "linear".
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

PATCH_STEMS = ("linear", "conv")


def check_patch_stem(stem: str, patch_size: int) -> None:
  """Raises ValueError naming the field when a stem cannot tile the patch."""
  if stem not in PATCH_STEMS:
    raise ValueError(f"patch_stem={stem!r} must be one of {PATCH_STEMS}.")
  if stem == "conv" and (patch_size < 2 or patch_size & (patch_size - 1)):
    raise ValueError(f"patch_stem='conv' halves the image per conv, "
                     f"so patch_size must be a power of two >= 2; got "
                     f"{patch_size}. Use patch_stem='linear'.")


def stem_widths(patch_size: int, width: int) -> tuple[int, ...]:
  """The conv stem's channels: doubling per stride-2 conv and ending at the
  model's width (Xiao et al.'s stems end at 384 under a 768-wide ViT-B; a
  narrow laboratory model gets a full-width last conv), at least 16."""
  steps = int(math.log2(patch_size))
  return tuple(max(16, width // 2 ** (steps - 1 - i)) for i in range(steps))


def patch_tokens(pixels: jax.Array, *, stem: str, patch_size: int,
                 width: int, init_std: float,
                 dtype: jnp.dtype = jnp.float32) -> jax.Array:
  """[B, H, W, C] pixels -> [B, H / patch, W / patch, width] patch tokens.

  Called inside the embedding module's compact `__call__`, so the layers are
  its own: "linear" keeps ViLT's parameter name (`patch_embeddings`, which
  the weight converters map) and "conv" adds `stem_conv_{i}` /
  `stem_norm_{i}` before a 1x1 `patch_embeddings`.
  """
  kernel_init = nn.with_logical_partitioning(
      nn.initializers.normal(init_std), (None, None, None, "embed"))
  if stem == "linear":
    return nn.Conv(width, (patch_size,) * 2, strides=(patch_size,) * 2,
                   padding="VALID", dtype=dtype, kernel_init=kernel_init,
                   name="patch_embeddings")(pixels)
  x = pixels
  for i, channels in enumerate(stem_widths(patch_size, width)):
    x = nn.Conv(channels, (3, 3), strides=(2, 2), padding="SAME",
                dtype=dtype, name=f"stem_conv_{i}")(x)
    x = nn.LayerNorm(dtype=dtype, name=f"stem_norm_{i}")(x)
    x = nn.gelu(x)  # [B, H / 2^(i+1), W / 2^(i+1), channels]
  return nn.Conv(width, (1, 1), dtype=dtype, kernel_init=kernel_init,
                 name="patch_embeddings")(x)
