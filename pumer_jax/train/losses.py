"""Task losses, one per task head; the KD losses are `compress.distill`'s.

Each function returns a per-example loss [B]; callers average over the
valid examples with `masked_mean`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


VQA_REDUCTIONS = ("sum", "mean")


def vqa_bce(logits: jax.Array, soft_labels: jax.Array,
            reduction: str = "sum") -> jax.Array:
  """VQA's loss: BCE on soft scores, over answers by `reduction`.

  "sum" is ViLT's and METER's (they average over answers and multiply by
  their number: the same); "mean" is PuMer's code (BCE averaged over batch
  x answers), 1/num_answers of it, which weighs the task loss against the
  distillation terms as PuMer's results were trained.
  """
  if reduction not in VQA_REDUCTIONS:
    raise ValueError(f"loss.vqa_reduction={reduction!r} must be one of "
                     f"{VQA_REDUCTIONS}.")
  per_answer = optax.sigmoid_binary_cross_entropy(logits, soft_labels)
  if reduction == "mean":
    return per_answer.mean(axis=-1)  # [B]
  return per_answer.sum(axis=-1)  # [B]


def classification_ce(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Cross-entropy for SNLI-VE (3-way) and NLVR2 (2-way)."""
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, labels.astype(jnp.int32))  # [B]


def itm_bce(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Image-text matching: BCE of the [B, 1] score against 0/1 labels."""
  return optax.sigmoid_binary_cross_entropy(
      logits[..., 0], labels.astype(logits.dtype))  # [B]


def patch_ce(logits: jax.Array, targets: jax.Array
             ) -> tuple[jax.Array, jax.Array]:
  """Per-example cross-entropy of per-patch classes, averaged over patches
  ([B, P, K] logits, [B, P] targets -> [B]), and the accuracy on the
  patches that show an object (class > 0; most patches are background)."""
  targets = targets.astype(jnp.int32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  shown = targets > 0
  hits = (logits.argmax(-1) == targets) & shown
  accuracy = hits.sum() / jnp.maximum(shown.sum(), 1)
  return ce.mean(axis=-1), accuracy


def grounding_bce(logits: jax.Array, targets: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
  """Per-example balanced BCE of per-patch "named here" logits ([B, P]
  logits and 0/1 targets -> [B]): the named patches' mean and the others'
  mean, weighted equally (a question names a few patches of 144), the
  other patches' alone when none is named; and the batch's balanced
  accuracy (the named and the other patches' accuracies averaged)."""
  named = targets > 0.5
  hit = optax.sigmoid_binary_cross_entropy(logits, named.astype(logits.dtype))
  def mean_over(mask):
    return (hit * mask).sum(-1) / jnp.maximum(mask.sum(-1), 1)
  has_named = named.any(-1)
  loss = jnp.where(has_named, 0.5 * mean_over(named) + 0.5 * mean_over(~named),
                   mean_over(~named))
  said = logits > 0
  recall = (said & named).sum() / jnp.maximum(named.sum(), 1)
  rejected = (~said & ~named).sum() / jnp.maximum((~named).sum(), 1)
  return loss, 0.5 * (recall + rejected)


TASK_LOSSES = {"vqa": vqa_bce, "ve": classification_ce,
               "nlvr2": classification_ce, "retrieval": itm_bce}


def itm_pairs(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Matched and mismatched image-text pairs from a batch of matched ones.

  Retrieval batches hold matched pairs only. As ViLT's ITM objective, each
  caption is also paired with another example's image (the batch rolled by
  one), labelled 0. [B] -> [2B].
  """
  text_keys = ("input_ids", "attention_mask", "token_type_ids")
  out = {}
  for key in text_keys:
    if key in batch:
      out[key] = jnp.concatenate([batch[key], batch[key]], axis=0)
  pixels = batch["pixel_values"]
  out["pixel_values"] = jnp.concatenate(
      [pixels, jnp.roll(pixels, 1, axis=0)], axis=0)
  ones = jnp.ones(pixels.shape[:1], jnp.int32)
  out["label"] = jnp.concatenate([ones, jnp.zeros_like(ones)])
  out["valid"] = jnp.concatenate([batch["valid"], batch["valid"]])
  return out


def masked_mean(values: jax.Array, valid: jax.Array) -> jax.Array:
  """Mean of per-example values over the valid examples."""
  valid = valid.astype(values.dtype)
  return (values * valid).sum() / jnp.maximum(valid.sum(), 1.0)
