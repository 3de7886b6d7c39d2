"""EfficientVLM stage 1: a half-depth student and its distillation maps.

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

from pumer_jax import losses
from pumer_jax.models import MeterConfig, ViltConfig

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
  teacher layer 2i+1; `hidden`: mean of hidden-state MSE against teacher
  hidden 2i. Both outputs need `output_attentions`/`output_hidden_states`.
  """
  attn = [losses.attention_mse(s, t) for s, t in _pairs(
      student_out["attentions"], teacher_out["attentions"],
      METER_ATTENTIONS, attention=True)]
  hidden = [losses.hidden_mse(s, t) for s, t in _pairs(
      student_out["hidden_states"], teacher_out["hidden_states"],
      METER_HIDDEN, attention=False)]
  return {"attn": jnp.mean(jnp.stack(attn), axis=0),
          "hidden": jnp.mean(jnp.stack(hidden), axis=0)}
