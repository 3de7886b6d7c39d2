"""Task metrics: VQA score, accuracy, and retrieval R@K.

`batch_metric_sums` runs inside the jitted eval step (sums over a padded
batch's valid examples); retrieval's recall needs the full caption x image
score matrix, which `retrieval_scores` fills and `recall_at_k` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax.numpy as jnp
import numpy as np

from pumer_jax.train import sharding

METRIC_NAMES = {"vqa": "vqa_score", "ve": "accuracy", "nlvr2": "accuracy",
                "retrieval": "ir_r@1"}


def batch_metric_sums(task: str, out: dict[str, Any], batch: dict[str, Any]):
  """(sum of the per-example metric, number of valid examples) for a batch.

  VQA score: the soft score (min(1, count/3)) of the predicted answer.
  VE/NLVR2: accuracy. Retrieval: accuracy of the ITM score's sign on
  matched/unmatched pairs (R@K needs the full score matrix: `recall_at_k`).
  """
  valid = batch["valid"].astype(jnp.float32)
  logits = out["logits"]
  if task == "vqa":
    predicted = jnp.argmax(logits, axis=-1)
    per_example = jnp.take_along_axis(batch["labels"], predicted[:, None],
                                      axis=-1)[:, 0]
  elif task in ("ve", "nlvr2"):
    per_example = (jnp.argmax(logits, -1) == batch["label"]).astype(
        jnp.float32)
  else:
    per_example = ((logits[:, 0] > 0) == (batch["label"] > 0)).astype(
        jnp.float32)
  return (per_example * valid).sum(), valid.sum()


def recall_at_k(scores: np.ndarray, image_of_caption: np.ndarray,
                ks=(1, 5, 10)) -> dict[str, float]:
  """Image and text retrieval recall from an [images, captions] score matrix.

  IR: for each caption, is its image among the top k images? TR: for each
  image, is any of its captions among the top k captions?
  """
  num_images = scores.shape[0]
  out = {}
  by_caption = np.argsort(-scores, axis=0)  # [images, captions]
  by_image = np.argsort(-scores, axis=1)  # [images, captions]
  for k in ks:
    ir = np.mean([image_of_caption[c] in by_caption[:k, c]
                  for c in range(scores.shape[1])])
    tr = np.mean([np.any(image_of_caption[by_image[i, :k]] == i)
                  for i in range(num_images)])
    out[f"ir_r@{k}"], out[f"tr_r@{k}"] = float(ir), float(tr)
  return out


def retrieval_scores(
    forward: Callable, params: Any,
    make_captions: Callable[[], Iterable[dict[str, np.ndarray]]],
    make_images: Callable[[], Iterable[dict[str, np.ndarray]]],
    mesh,
) -> tuple[np.ndarray, np.ndarray]:
  """ITM scores of every (image, caption) pair: [images, captions].

  Each caption batch is crossed with each image batch (Bc x Bi pairs per
  forward), as ViLT's retrieval evaluation. Returns the score matrix and
  the image index of each caption.
  """
  captions = list(make_captions())
  images = list(make_images())
  num_images = 1 + max(int(i) for b in images
                       for i, v in zip(b["image_index"], b["valid"]) if v)
  num_captions = 1 + max(int(c) for b in captions
                         for c, v in zip(b["caption_index"], b["valid"]) if v)
  scores = np.full((num_images, num_captions), -np.inf, np.float32)
  image_of_caption = np.full((num_captions,), -1, np.int64)
  text_keys = ("input_ids", "attention_mask", "token_type_ids")
  for cb in captions:
    real_c = np.asarray(cb["valid"], bool)
    image_of_caption[cb["caption_index"][real_c]] = cb["image_index"][real_c]
    for ib in images:
      bc, bi = len(cb["valid"]), len(ib["valid"])
      pairs = {k: np.repeat(cb[k], bi, axis=0) for k in text_keys if k in cb}
      pairs["pixel_values"] = np.tile(
          ib["pixel_values"], (bc,) + (1,) * (ib["pixel_values"].ndim - 1))
      logits = np.asarray(forward(params, sharding.put_batch(pairs, mesh))[
          "logits"])[:, 0].reshape(bc, bi)  # [captions, images]
      real_i = np.asarray(ib["valid"], bool)
      rows = ib["image_index"][real_i]
      cols = cb["caption_index"][real_c]
      scores[np.ix_(rows, cols)] = logits[np.ix_(real_c, real_i)].T
  if np.isneginf(scores).any() or (image_of_caption < 0).any():
    raise ValueError("the retrieval split left some (image, caption) pairs "
                     "unscored; its image/caption indices are not dense.")
  return scores, image_of_caption
