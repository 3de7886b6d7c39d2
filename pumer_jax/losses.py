"""Task losses and distillation losses (DESIGN 4.5).

Each function returns a per-example loss [B]; callers average over the
valid examples. `logits_kl` is the one logits distillation shared by PuMer's
KD and EfficientVLM's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def vqa_bce(logits: jax.Array, soft_labels: jax.Array) -> jax.Array:
  """ViLT's VQA loss: BCE on soft scores, summed over answers.

  (ViLT averages over answers and multiplies by their number: the same.)
  """
  per_answer = optax.sigmoid_binary_cross_entropy(logits, soft_labels)
  return per_answer.sum(axis=-1)  # [B]


def classification_ce(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Cross-entropy for SNLI-VE (3-way) and NLVR2 (2-way)."""
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, labels.astype(jnp.int32))  # [B]


def itm_bce(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Image-text matching: BCE of the [B, 1] score against 0/1 labels."""
  return optax.sigmoid_binary_cross_entropy(
      logits[..., 0], labels.astype(logits.dtype))  # [B]


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


def logits_kl(
    student: jax.Array, teacher: jax.Array, temperature: float = 1.0
) -> jax.Array:
  """KL(teacher || student) of softened distributions, times T^2.

  Over the last axis by softmax; a single logit (retrieval's ITM score) is a
  Bernoulli by sigmoid. Zero when student == teacher.
  """
  t = temperature
  teacher = jax.lax.stop_gradient(teacher)
  if student.shape[-1] == 1:
    student = jnp.concatenate([student, jnp.zeros_like(student)], -1)
    teacher = jnp.concatenate([teacher, jnp.zeros_like(teacher)], -1)
  log_p_t = jax.nn.log_softmax(teacher / t, axis=-1)
  log_p_s = jax.nn.log_softmax(student / t, axis=-1)
  kl = jnp.sum(jnp.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)
  return kl * t * t  # [B]


def hidden_mse(student: jax.Array, teacher: jax.Array,
               weight: jax.Array | None = None) -> jax.Array:
  """Mean squared error of hidden states [B, N, D] -> [B].

  `weight` [B, N] restricts the mean to some tokens (e.g. the real ones).
  """
  sq = jnp.mean((student - jax.lax.stop_gradient(teacher)) ** 2, axis=-1)
  if weight is None:
    return sq.mean(axis=-1)
  return (sq * weight).sum(-1) / jnp.maximum(weight.sum(-1), 1.0)


def masked_mean(values: jax.Array, valid: jax.Array) -> jax.Array:
  """Mean of per-example values over the valid examples."""
  valid = valid.astype(values.dtype)
  return (values * valid).sum() / jnp.maximum(valid.sum(), 1.0)


def attention_mse(student: jax.Array, teacher: jax.Array) -> jax.Array:
  """MSE of attention probabilities [B, H, Nq, Nk] -> [B] (EfficientVLM).

  On the softmax probabilities, not the logits: padded keys have
  probability 0 in both, so they add nothing.
  """
  diff = student - jax.lax.stop_gradient(teacher)
  return jnp.mean(diff * diff, axis=(1, 2, 3))
