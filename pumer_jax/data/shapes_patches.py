"""Dense targets for shapes_vqa: which object each image patch shows.

A laboratory model whose objects span several patches must first learn to
tell a circle from a square across patches before any question can bind to
it; one answer per image is a weak signal for that. The per-patch class
(background, or the object's size, colour and shape) is 144 labels per image
at ViLT-B/32's grid, the stand-in for the supervised visual pretraining a
real ViLT starts from (ViT on ImageNet-21k). Since a scene never holds two
objects of one colour and shape, the class also names the instance, so
patches of one object share it and patches of two objects never do
(`shapes_vocab.PATCH_CLASSES`). `grounding_targets` marks the patches of
the objects a question names.
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


def patch_objects(objects: Sequence[ShapeObject], image_size: int,
                  grid: int) -> np.ndarray:
  """int32 [grid * grid], row-major: 1 + the index of the object each patch
  shows (the one covering most of it, if at least MIN_COVER), 0 background."""
  if grid < 1 or image_size % grid:
    raise ValueError(f"a {grid}x{grid} patch grid does not tile a "
                     f"{image_size}x{image_size} image; prepare the data at a "
                     "multiple of the model's grid (input_size / patch_size).")
  p = image_size // grid
  best = np.zeros((grid, grid))  # the largest coverage seen per patch
  out = np.zeros((grid, grid), np.int32)
  for i, obj in enumerate(objects):
    cover = object_mask(obj, image_size).reshape(grid, p, grid, p).mean(axis=(1, 3))
    wins = (cover >= MIN_COVER) & (cover > best)
    out[wins] = i + 1
    best = np.maximum(best, cover)
  return out.reshape(-1)


def patch_targets(objects: Sequence[ShapeObject], image_size: int,
                  grid: int) -> np.ndarray:
  """int32 [grid * grid], row-major: each patch's class in PATCH_CLASSES."""
  classes = np.array([0] + [_INDEX[f"{o.size} {o.color} {o.shape}"]
                            for o in objects], np.int32)
  return classes[patch_objects(objects, image_size, grid)]


def grounding_targets(objects: Sequence[ShapeObject], referents: Sequence[int],
                      image_size: int, grid: int) -> np.ndarray:
  """float32 [grid * grid]: 1 on the patches of the objects a question names
  (its `referents`), 0 elsewhere (all 0 when it names none present).

  The stand-in for ViLT's word-patch alignment pretraining: a signal that
  ties the text to the patches it is about, per patch rather than one
  answer per question.
  """
  shown = patch_objects(objects, image_size, grid) - 1  # -1: background
  named = np.zeros(len(objects) + 1, bool)
  named[np.asarray(referents, np.int64)] = True
  return named[shown].astype(np.float32) * (shown >= 0)
