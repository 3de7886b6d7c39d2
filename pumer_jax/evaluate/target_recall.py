"""Target-object recall: does a reducer keep the patches a question names?

shapes_vqa knows where every object is and which objects a question names
(`referents`). With the model's token source map (`track_source=True`),
after a reduction:

- **target recall**: the fraction of the referent objects' patches (those an
  object overlaps by at least one pixel) still represented by some surviving
  token;
- **background share**: the fraction of surviving image tokens (tokens that
  hold at least one image patch) whose patches are all background.

PuMer's claim is that the text tells which image tokens matter: its recall
should stay high while its background share falls. Questions naming no
object (an absent one, or a count of zero) have no recall.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds

from pumer_jax.data import loaders
from pumer_jax.data.shapes_scene import ShapeObject, object_mask
from pumer_jax.models import ViltConfig


def patch_coverage(objects: Sequence[ShapeObject], image_size: int,
                   patch_size: int) -> np.ndarray:
  """bool [num_objects, P]: the patches (row-major) each object overlaps."""
  if image_size % patch_size:
    raise ValueError(f"image_size={image_size} is not a multiple of "
                     f"patch_size={patch_size}.")
  grid = image_size // patch_size
  out = np.zeros((len(objects), grid * grid), bool)
  for i, obj in enumerate(objects):
    mask = object_mask(obj, image_size)  # [S, S]
    per_patch = mask.reshape(grid, patch_size, grid, patch_size).any((1, 3))
    out[i] = per_patch.reshape(-1)
  return out


def recall_and_background(patch_sources: np.ndarray, referent: np.ndarray,
                          background: np.ndarray) -> tuple[float, float]:
  """Target recall and background share of one example after a reduction.

  Args:
    patch_sources: [N_out, P] how much of each original image patch every
      surviving token holds (the source map's patch columns, CLS and text
      columns dropped).
    referent: bool [P], the referent objects' patches.
    background: bool [P], patches no object overlaps.

  Returns:
    `(recall, background_share)`; recall is NaN when no patch is a
    referent's, the share NaN when no token holds a patch.
  """
  holds = np.asarray(patch_sources) > 0  # [N_out, P]
  present = holds.any(axis=0)  # [P]
  recall = (float(present[referent].mean()) if referent.any()
            else float("nan"))
  image_tokens = holds.any(axis=1)
  only_background = image_tokens & ~(holds & ~background[None]).any(axis=1)
  share = (float(only_background.sum() / image_tokens.sum())
           if image_tokens.any() else float("nan"))
  return recall, share


def objects_from_record(record: dict) -> tuple[ShapeObject, ...]:
  """The scene's objects from a shapes_vqa record (its `objects` feature)."""
  objects = record["objects"]
  decode = lambda v: v.decode() if isinstance(v, bytes) else str(v)
  return tuple(
      ShapeObject(decode(c), decode(s), decode(z), float(xy[1]), float(xy[0]),
                  float(r))
      for c, s, z, xy, r in zip(objects["color"], objects["shape"],
                                objects["size"], objects["center"],
                                objects["radius"]))


def example_masks(record: dict, image_size: int, patch_size: int
                  ) -> tuple[np.ndarray, np.ndarray]:
  """(referent, background) bool [P] masks of one shapes_vqa record."""
  objects = objects_from_record(record)
  grid = image_size // patch_size
  if not objects:
    return np.zeros(grid * grid, bool), np.ones(grid * grid, bool)
  coverage = patch_coverage(objects, image_size, patch_size)
  referents = np.asarray(record["referents"], np.int64)
  referent = (coverage[referents].any(axis=0) if len(referents)
              else np.zeros(coverage.shape[1], bool))
  return referent, ~coverage.any(axis=0)


def layer_recalls(sources: tuple, batch: dict, records, image_size: int,
                  patch_size: int, first_patch: int) -> list[list[tuple]]:
  """Per reduction layer, `(recall, background share)` of each valid row.

  Args:
    sources: the model's `sources` output, one [B, N, N0] map per layer.
    batch: the evaluated batch (its `example_id` indexes `records`).
    records: the split's shapes_vqa records (objects, referents).
    first_patch: the source column of the first image patch (ViLT: text
      length + 1, past the image CLS; METER: 1).
  """
  out = [[] for _ in sources]
  for row in np.flatnonzero(batch["valid"]):
    record = records[int(batch["example_id"][row])]
    referent, background = example_masks(record, image_size, patch_size)
    for layer, source in enumerate(sources):
      out[layer].append(recall_and_background(
          np.asarray(source[row])[:, first_patch:], referent, background))
  return out


def summarize(layers: tuple[int, ...], per_layer: list[list[tuple]]
              ) -> list[dict]:
  """Mean recall and background share per reduction layer (NaNs skipped)."""
  rows = []
  for layer, values in zip(layers, per_layer):
    recalls = np.array([v[0] for v in values], np.float64)
    shares = np.array([v[1] for v in values], np.float64)
    rows.append(dict(layer=int(layer),
                     target_recall=float(np.nanmean(recalls)),
                     background_share=float(np.nanmean(shares)),
                     examples_with_referents=int(np.isfinite(recalls).sum())))
  return rows


def split_records(config, split: str):
  """The split's records without decoding images (objects, referents)."""
  return loaders.prepared_builder(config).as_data_source(
      split=split, decoders={"image": tfds.decode.SkipDecoding()})


def model_layers(config, text_len: int) -> tuple[int, ...]:
  """The layers that reduce, as the model's schedule runs them (the `sources`
  it returns): official PuMer skips a layer whose prune count rounds to 0,
  ToMe with no layers named reduces in every layer."""
  h, w = config.input_size or (config.image_size, config.image_size)
  image_len = (h // config.patch_size) * (w // config.patch_size) + 1
  return config.schedule(image_len, text_len).layers


def first_patch_column(config, batch) -> int:
  """ViLT's source map covers [text; image]; METER's the image alone."""
  return 1 + (batch["input_ids"].shape[1]
              if isinstance(config, ViltConfig) else 0)
