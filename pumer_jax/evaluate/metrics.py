"""Task metrics: VQA score, accuracy, and retrieval R@K.

`batch_metric_sums` runs inside the jitted eval step (sums over a padded
batch's valid examples); retrieval's recall needs the full caption x image
score matrix, which `retrieval.retrieval_scores` fills and `recall_at_k`
reads.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np


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
