"""SmRes: the unreduced model at a smaller input resolution (DESIGN 4.4).

Fewer patches from the start; the position embeddings are interpolated to
the smaller grid by the models, as for any input size.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax

from pumer_jax.reduce.config import ReduceConfig, register
from pumer_jax.reduce.protocol import Geometry, Where


@register
@dataclasses.dataclass(frozen=True)
class SmRes(ReduceConfig):
  """SmRes's setting (config key `reduce`, `method="smres"`).

  Attributes:
    smres_size: (H, W) the input resolution, multiples of the patch size.
  """

  method: ClassVar[str] = "smres"
  label: ClassVar[str] = "SmRes"
  where: ClassVar[Where] = Where.INPUT

  smres_size: tuple[int, int] | None = None

  def __post_init__(self):
    if self.smres_size is None:
      return
    size = tuple(self.smres_size)
    object.__setattr__(self, "smres_size", size)
    if (len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int)
                              or v < 1 for v in size)):
      raise ValueError(f"reduce.smres_size={self.smres_size!r} must be "
                       "(H, W), two positive ints.")

  def _size(self, patch_size: int) -> tuple[int, int]:
    if self.smres_size is None:
      raise ValueError("reduce.method='smres' needs reduce.smres_size=(H, W).")
    h, w = self.smres_size
    if h % patch_size or w % patch_size:
      raise ValueError(
          f"reduce.smres_size={self.smres_size} must be a multiple of "
          f"patch_size={patch_size}.")
    return h, w

  def input_image_len(self, geometry: Geometry) -> int:
    h, w = self._size(geometry.patch_size)
    return (h // geometry.patch_size) * (w // geometry.patch_size) + 1

  def input_size(self, image_hw):
    return self.smres_size or image_hw

  def prepare_pixels(self, pixel_values: jax.Array, patch_size: int
                     ) -> jax.Array:
    h, w = self._size(patch_size)
    if pixel_values.shape[-3:-1] == (h, w):  # fed at its size already
      return pixel_values
    shape = pixel_values.shape[:-3] + (h, w, pixel_values.shape[-1])
    return jax.image.resize(pixel_values, shape, "bilinear", antialias=True)

  @classmethod
  def search_space(cls, geometry, image_hw):
    """Every resolution a patch multiple below the input's, aspect kept."""
    full_h, full_w = image_hw
    step = geometry.patch_size
    return [cls(smres_size=(h, h * full_w // full_h))
            for h in range(full_h - step, step - 1, -step)
            if (h * full_w // full_h) % step == 0]

  def describe(self) -> str:
    h, w = self.smres_size or (0, 0)
    return f"smres {h}x{w}"
