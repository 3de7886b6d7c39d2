"""How an image position table starts: the ViT default or a 2-D sin-cos code.

Both ViLT and METER's CLIP tower learn their table; on the small embedded
task a model started from N(0, 0.02) learns what an object is long before
where it is, and a 2-D sine-cosine start (MAE's table) gives position from
step 0. Only the initialisation differs; the table is trained either way.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

# `image_position_init` of `ViltConfig` and `MeterConfig`.
IMAGE_POSITION_INITS = ("normal", "sincos2d")


def sincos2d(grid: int, dim: int) -> np.ndarray:
  """float32 [grid * grid, dim]: a 2-D sine-cosine code, row-major patches.

  The first half of the channels encode the row, the second the column,
  each as sin and cos at dim // 4 frequencies (MAE's 2-D table).
  """
  if dim % 4:
    raise ValueError(f"sincos2d needs dim divisible by 4; got {dim}.")
  omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))
  pos = np.arange(grid, dtype=np.float64)
  codes = []
  for axis in np.meshgrid(pos, pos, indexing="ij"):  # rows, then columns
    angles = axis.reshape(-1)[:, None] * omega[None]
    codes += [np.sin(angles), np.cos(angles)]
  return np.concatenate(codes, axis=1).astype(np.float32)


def sincos2d_init(grid: int, scale: float):
  """An initializer for a [..., 1 + grid^2, D] table: row 0 (CLS) zero."""
  def init(key, shape, dtype=jnp.float32):
    del key
    table = np.zeros(shape, np.float32)
    table[..., 1:, :] = scale * sincos2d(grid, shape[-1])
    return jnp.asarray(table, dtype)
  return init


def check_image_init(init: str, scale: float, patch_std: float,
                     width: int, prefix: str = "") -> None:
  """Raises ValueError naming the field when an image init setting is wrong."""
  if init not in IMAGE_POSITION_INITS:
    raise ValueError(f"{prefix}image_position_init={init!r} must be one of "
                     f"{IMAGE_POSITION_INITS}.")
  if init == "sincos2d" and width % 4:
    raise ValueError(f"{prefix}image_position_init='sincos2d' needs a width "
                     f"divisible by 4; got {width}.")
  if not patch_std > 0:
    raise ValueError(f"{prefix}patch_init_std={patch_std} must be > 0.")
  if not scale > 0:
    raise ValueError(f"{prefix}image_position_scale={scale} must be > 0.")
