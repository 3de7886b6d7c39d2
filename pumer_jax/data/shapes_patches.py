"""Dense targets for shapes_vqa: which object each image patch shows.

A laboratory model whose objects span several patches must first learn to
tell a circle from a square across patches before any question can bind to
it; one answer per image is a weak signal for that. The per-patch class
(background, or the object's size, colour and shape) is 144 labels per image
at ViLT-B/32's grid, the stand-in for the supervised visual pretraining a
real ViLT starts from (ViT on ImageNet-21k). Since a scene never holds two
objects of one colour and shape, the class also names the instance, so
patches of one object share it and patches of two objects never do
(`shapes_vocab.PATCH_CLASSES`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pumer_jax.data.shapes_scene import ShapeObject, object_mask
from pumer_jax.data.shapes_vocab import PATCH_CLASSES

_INDEX = {name: i for i, name in enumerate(PATCH_CLASSES)}
# A patch is labelled with the object covering most of its pixels, when that
# object covers at least this share of them; else background.
MIN_COVER = 0.25


def _text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def stored_objects(objects: Mapping[str, Any]) -> list[ShapeObject]:
  """The scene's objects from a prepared example's `objects` feature."""
  centers = np.asarray(objects["center"], np.float64).reshape(-1, 2)  # (y, x)
  return [ShapeObject(_text(c), _text(s), _text(z), float(x), float(y), float(r))
          for c, s, z, (y, x), r in zip(objects["color"], objects["shape"],
                                         objects["size"], centers,
                                         objects["radius"])]


def patch_targets(objects: Sequence[ShapeObject], image_size: int,
                  grid: int) -> np.ndarray:
  """int32 [grid * grid], row-major: each patch's class in PATCH_CLASSES."""
  if grid < 1 or image_size % grid:
    raise ValueError(f"a {grid}x{grid} patch grid does not tile a "
                     f"{image_size}x{image_size} image; prepare the data at a "
                     "multiple of the model's grid (input_size / patch_size).")
  p = image_size // grid
  best = np.zeros((grid, grid))  # the largest coverage seen per patch
  out = np.zeros((grid, grid), np.int32)
  for obj in objects:
    cover = object_mask(obj, image_size).reshape(grid, p, grid, p).mean(axis=(1, 3))
    wins = (cover >= MIN_COVER) & (cover > best)
    out[wins] = _INDEX[f"{obj.size} {obj.color} {obj.shape}"]
    best = np.maximum(best, cover)
  return out.reshape(-1)
