"""The retrieval score matrix: every (image, caption) pair, resumable.

Flickr30k's 1k test split is 1000 images x 5000 captions, 5 million ITM
forward passes: hours on a CPU, minutes to hours on a GPU. The matrix is
filled one caption batch (against every image) at a time; with a
`cache_dir` each finished block is saved there, so a killed run continues
where it stopped, and a progress bar shows pairs/s.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from tqdm import tqdm

from pumer_jax.train import sharding

_TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def _block(forward, params, cb, images, mesh) -> np.ndarray:
  """Scores of one caption batch against every image batch: [Bc, images]."""
  cols = []
  for ib in images:
    bc, bi = len(cb["valid"]), len(ib["valid"])
    pairs = {k: np.repeat(cb[k], bi, axis=0) for k in _TEXT_KEYS if k in cb}
    pairs["pixel_values"] = np.tile(
        ib["pixel_values"], (bc,) + (1,) * (ib["pixel_values"].ndim - 1))
    logits = np.asarray(forward(params, sharding.put_batch(pairs, mesh))[
        "logits"])[:, 0].reshape(bc, bi)  # [captions, images]
    cols.append(logits)
  return np.concatenate(cols, axis=1)


class _Cache:
  """Finished caption blocks on disk, for one run's `key`."""

  def __init__(self, directory: pathlib.Path | None, key: dict[str, Any]):
    self.directory = directory
    if directory is None:
      return
    meta = directory / "meta.json"
    if meta.exists():
      saved = json.loads(meta.read_text())
      if saved != key:
        raise ValueError(
            f"{directory} holds the partial scores of another run ({saved}); "
            f"this run is {key}. Delete the directory to start over, or point "
            "the run at it unchanged to resume.")
    else:
      directory.mkdir(parents=True, exist_ok=True)
      meta.write_text(json.dumps(key, sort_keys=True))

  def load(self, index: int, rows: int, cols: int) -> np.ndarray | None:
    if self.directory is None:
      return None
    path = self.directory / f"captions_{index:05d}.npy"
    if not path.exists():
      return None
    try:
      block = np.load(path)
    except (OSError, ValueError):
      return None  # a write the kill interrupted: score it again
    return block if block.shape == (rows, cols) else None

  def save(self, index: int, block: np.ndarray) -> None:
    if self.directory is not None:
      path = self.directory / f"captions_{index:05d}.npy"
      tmp = path.with_suffix(".tmp.npy")
      np.save(tmp, block)
      tmp.replace(path)  # atomic: a block is whole or absent

  def clear(self) -> None:
    if self.directory is not None:
      shutil.rmtree(self.directory)


def retrieval_scores(
    forward: Callable, params: Any,
    make_captions: Callable[[], Iterable[dict[str, np.ndarray]]],
    make_images: Callable[[], Iterable[dict[str, np.ndarray]]],
    mesh, *, cache_dir: str | pathlib.Path | None = None,
    cache_key: dict[str, Any] | None = None, progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
  """ITM scores of every (image, caption) pair: [images, captions].

  Each caption batch is crossed with each image batch (Bc x Bi pairs per
  forward), as ViLT's retrieval evaluation. With `cache_dir`, each caption
  batch's scores are kept there as they finish (named by `cache_key`, which
  must match to resume) and the directory is removed once the matrix is
  whole. Returns the score matrix and the image index of each caption.
  """
  captions = list(make_captions())
  images = list(make_images())
  num_images = 1 + max(int(i) for b in images
                       for i, v in zip(b["image_index"], b["valid"]) if v)
  num_captions = 1 + max(int(c) for b in captions
                         for c, v in zip(b["caption_index"], b["valid"]) if v)
  scores = np.full((num_images, num_captions), -np.inf, np.float32)
  image_of_caption = np.full((num_captions,), -1, np.int64)
  image_cols = sum(len(b["valid"]) for b in images)
  real_i = np.concatenate([np.asarray(b["valid"], bool) for b in images])
  rows = np.concatenate([b["image_index"] for b in images])[real_i]
  cache = _Cache(None if cache_dir is None else pathlib.Path(cache_dir),
                 dict(cache_key or {}, images=num_images,
                      captions=num_captions))
  bar = tqdm(total=len(captions) * image_cols * len(captions[0]["valid"]),
             unit="pair", disable=not progress, file=sys.stderr,
             desc="retrieval pairs")
  started, scored = time.perf_counter(), 0
  for index, cb in enumerate(captions):
    real_c = np.asarray(cb["valid"], bool)
    image_of_caption[cb["caption_index"][real_c]] = cb["image_index"][real_c]
    block = cache.load(index, len(real_c), image_cols)
    if block is None:
      block = _block(forward, params, cb, images, mesh)
      cache.save(index, block)
      scored += block.size
      bar.set_postfix(pairs_per_s=f"{scored / (time.perf_counter() - started):.0f}")
    bar.update(block.size)
    scores[np.ix_(rows, cb["caption_index"][real_c])] = block[real_c][:, real_i].T
  bar.close()
  if np.isneginf(scores).any() or (image_of_caption < 0).any():
    raise ValueError("the retrieval split left some (image, caption) pairs "
                     "unscored; its image/caption indices are not dense.")
  cache.clear()
  return scores, image_of_caption
