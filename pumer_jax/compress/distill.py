"""Knowledge distillation: the KD losses, and EfficientVLM's half-depth
student with its distillation maps.

The losses (`logits_kl`, `hidden_mse`, `attention_mse`) serve every
distillation in the project: PuMer's from the unreduced model (logits, and
optionally pooled features) and EfficientVLM's (every layer).

The student is the teacher's architecture with half the layers in every
module (ViLT: 6 of 12; METER: vision, text and fusion halved), initialised
from teacher layers 1, 3, 5, ... (0-based) of the same module; everything
outside the layers (embeddings, projections, poolers, head) is copied. KD
pairs student hidden state i (0 = the embeddings) with teacher hidden 2i,
and student attention i with teacher attention 2i + 1 (DESIGN 4.5).
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

from pumer_jax.models import MeterConfig, ReduceConfig, ViltConfig
from pumer_jax.models import saved


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


def attention_mse(student: jax.Array, teacher: jax.Array) -> jax.Array:
  """MSE of attention probabilities [B, H, Nq, Nk] -> [B] (EfficientVLM).

  On the softmax probabilities, not the logits: padded keys have
  probability 0 in both, so they add nothing.
  """
  diff = student - jax.lax.stop_gradient(teacher)
  return jnp.mean(diff * diff, axis=(1, 2, 3))


# Per architecture: (depth field, layer-name prefix inside the params).
DEPTHS = {
    ViltConfig: (("num_hidden_layers", ("vilt",), "layer_"),),
    MeterConfig: (
        ("vision_num_layers", ("meter", "vision"), "layer_"),
        ("text_num_layers", ("meter", "text"), "layer_"),
        ("num_fusion_layers", ("meter",), "text_layer_"),
        ("num_fusion_layers", ("meter",), "image_layer_"),
    ),
}
# Output keys of `hidden_states`/`attentions` per module (METER: dicts).
METER_HIDDEN = ("vision", "text", "fusion_text", "fusion_image")
METER_ATTENTIONS = ("vision", "text", "fusion_text_self", "fusion_text_cross",
                    "fusion_image_self", "fusion_image_cross")


def _depth_fields(config: Any):
  for cls, fields in DEPTHS.items():
    if isinstance(config, cls):
      return fields
  raise TypeError(f"{type(config).__name__} is not a model config.")


def student_config(teacher: ViltConfig | MeterConfig):
  """The teacher's config with every module's depth halved."""
  changes = {}
  for field, _, _ in _depth_fields(teacher):
    depth = getattr(teacher, field)
    if depth % 2:
      raise ValueError(
          f"{field}={depth} does not halve: the student takes teacher layers "
          "1, 3, 5, ...; use a teacher with an even depth (METER: "
          "vision_num_layers=12, all of CLIP ViT-B/16's blocks).")
    changes[field] = depth // 2
  return teacher.replace(**changes)


def student_layer_source(i: int) -> int:
  """The teacher layer student layer i starts from (and distils from)."""
  return 2 * i + 1


def init_student(teacher_config: ViltConfig | MeterConfig,
                 teacher_params: Any) -> Any:
  """Student parameters: teacher layer 2i+1 -> student layer i, the rest
  copied. Returns a new tree; the teacher's is not modified."""
  fields = _depth_fields(teacher_config)
  student = student_config(teacher_config)
  flat = flax.traverse_util.flatten_dict(teacher_params)
  out = {}
  layer_of = {}  # (parent path, prefix) -> student depth
  for field, parent, prefix in fields:
    layer_of[(parent, prefix)] = getattr(student, field)
  for key, value in flat.items():
    for (parent, prefix), depth in layer_of.items():
      n = len(parent)
      if key[:n] == parent and len(key) > n and key[n].startswith(prefix):
        index = key[n][len(prefix):]
        if not index.isdigit():
          continue
        teacher_layer = int(index)
        if teacher_layer % 2 == 1 and teacher_layer // 2 < depth:
          new = key[:n] + (f"{prefix}{teacher_layer // 2}",) + key[n + 1:]
          out[new] = value
        break
    else:
      out[key] = value
  return flax.traverse_util.unflatten_dict(out)


def _pairs(student: Any, teacher: Any, keys, attention: bool):
  """(student, teacher) tensors of the KD maps, over every module."""
  if isinstance(student, dict):
    modules = [(student[k], teacher[k]) for k in keys]
  else:
    modules = [(student, teacher)]
  for s_seq, t_seq in modules:
    for i, s in enumerate(s_seq):
      j = student_layer_source(i) if attention else 2 * i
      yield s, t_seq[j]


def distill_losses(student_out: dict, teacher_out: dict) -> dict[str, Any]:
  """EfficientVLM's KD terms, each a per-example [B] loss.

  `attn`: mean over student layers of the attention-probability MSE against
  teacher layer 2i+1 (when both outputs hold `attentions`); `hidden`: mean
  of hidden-state MSE against teacher hidden 2i (with `hidden_states`).
  """
  out = {}
  if "attentions" in student_out:
    out["attn"] = jnp.mean(jnp.stack([
        attention_mse(s, t) for s, t in _pairs(
            student_out["attentions"], teacher_out["attentions"],
            METER_ATTENTIONS, attention=True)]), axis=0)
  if "hidden_states" in student_out:
    out["hidden"] = jnp.mean(jnp.stack([
        hidden_mse(s, t) for s, t in _pairs(
            student_out["hidden_states"], teacher_out["hidden_states"],
            METER_HIDDEN, attention=False)]), axis=0)
  return out


STAGES = ("", "distill", "prune")


def stage_model(config) -> tuple[Any, Any]:
  """The model config and starting parameters of an EfficientVLM stage.

  `distill`: the half-depth student of the teacher (`distill.teacher`),
  initialised from its odd layers. `prune`: the stage-1 student saved at
  `init_from`, unchanged. The checkpoints, not `config.model`, fix the
  architecture; its family must be `config.arch`.
  """
  if config.stage not in STAGES[1:]:
    raise ValueError(f"stage={config.stage!r} must be one of {STAGES[1:]}.")
  if config.stage == "prune" and not 0.0 <= config.prune.target < 1.0:
    raise ValueError(
        f"prune.target={config.prune.target!r} must be in [0, 1): the "
        "fraction of the prunable parameters to remove.")
  if config.stage == "distill":
    key, source = "distill.teacher", config.distill.teacher
  else:
    key, source = "init_from", config.init_from
  if not source:
    raise ValueError(
        f"stage={config.stage!r} needs --config.{key}=DIR (a model "
        "checkpoint: train.py's WORKDIR/model or `python -m pumer_jax.convert`'s output).")
  model, variables = saved.load_model(source)
  family = type(model).__name__.lower()
  if family != config.arch:
    raise ValueError(
        f"{key}={source} holds a {family} model, but this config's arch is "
        f"{config.arch!r}; use model={family} or a {config.arch} checkpoint.")
  reduce = ReduceConfig.from_mapping(config.reduce)
  if config.stage == "distill":
    student = student_config(model.config).replace(reduce=reduce)
    return student, init_student(model.config, variables["params"])
  return model.config.replace(reduce=reduce), variables["params"]
