"""Target-object recall and background share on a hand-built scene."""

import numpy as np

from pumer_jax.data.shapes_scene import ShapeObject
from pumer_jax.evaluate.target_recall import (
    example_masks,
    patch_coverage,
    recall_and_background,
)

# 32x32 image, 8x8 patches: a 4x4 grid, patch index = 4 * row + col.
OBJECTS = (
    ShapeObject("red", "square", "small", 12.0, 12.0, 3.0),  # pixels 9-14: patch 5
    ShapeObject("blue", "square", "large", 20.0, 20.0, 4.0),  # 17-22: patch 10
    ShapeObject("green", "square", "large", 16.0, 4.0, 4.0),  # x 13-18, y 1-6: 1, 2
)


def patches(*indices):
  row = np.zeros(16)
  row[list(indices)] = 1.0
  return row


def test_patch_coverage_by_hand():
  coverage = patch_coverage(OBJECTS, 32, 8)
  assert [np.flatnonzero(c).tolist() for c in coverage] == [[5], [10], [1, 2]]


def test_recall_and_background_share_by_hand():
  record = {"objects": {
      "color": [o.color.encode() for o in OBJECTS],
      "shape": [o.shape.encode() for o in OBJECTS],
      "size": [o.size.encode() for o in OBJECTS],
      "center": np.array([[o.y, o.x] for o in OBJECTS], np.float32),
      "radius": np.array([o.radius for o in OBJECTS], np.float32)},
      "referents": np.array([0], np.int32)}
  referent, background = example_masks(record, 32, 8)
  assert np.flatnonzero(referent).tolist() == [5]
  assert np.flatnonzero(~background).tolist() == [1, 2, 5, 10]
  kept = np.stack([
      patches(0, 3),  # background only
      patches(5, 6),  # the referent, merged with background
      patches(10),  # another object
      patches(12, 13, 14, 15),  # background only
      patches(),  # a text or CLS token: not an image token
  ])
  assert recall_and_background(kept, referent, background) == (1.0, 0.5)
  pruned = kept.copy()
  pruned[1] = patches(6)  # the referent's patch is gone
  assert recall_and_background(pruned, referent, background) == (0.0, 0.75)
  # A question naming no object has no recall.
  recall, share = recall_and_background(kept, np.zeros(16, bool), background)
  assert np.isnan(recall) and share == 0.5


def test_source_picture_greys_pruned_patches():
  from pumer_jax.visualize import PRUNED_GREY, source_picture
  image = np.full((16, 16, 3), 255, np.uint8)  # 2x2 patches of 8
  sources = np.zeros((2, 4))
  sources[0, [0, 3]] = 1.0  # token 0 holds patches 0 and 3 (merged)
  sources[1, 1] = 1.0  # token 1 holds patch 1; patch 2 was pruned
  picture = source_picture(image, sources, 8)
  np.testing.assert_allclose(picture[12, 4], 0.15 + 0.85 * PRUNED_GREY)
  np.testing.assert_allclose(picture[0, 0], picture[12, 12])  # one token
  assert not np.allclose(picture[0, 0], picture[0, 12])  # two tokens
