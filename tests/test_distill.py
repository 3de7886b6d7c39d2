"""EfficientVLM stage 1: the half-depth student, its init and KD maps."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax.compress import distill
from pumer_jax.models import Meter, MeterConfig, Vilt, ViltConfig
from pumer_jax.models import meter as meter_lib
from pumer_jax.models import vilt as vilt_lib

VILT = ViltConfig(vocab_size=30, hidden_size=16, num_hidden_layers=4,
                  num_attention_heads=2, intermediate_size=24,
                  max_position_embeddings=8, image_size=32, patch_size=16,
                  num_labels=3)
METER = MeterConfig(
    vision_hidden_size=16, vision_num_layers=4, vision_num_heads=2,
    vision_intermediate_size=24, image_size=32, patch_size=16, vocab_size=30,
    text_hidden_size=16, text_num_layers=2, text_num_heads=2,
    text_intermediate_size=24, max_position_embeddings=12, hidden_size=16,
    num_fusion_layers=2, num_attention_heads=2, intermediate_size=24,
    num_labels=3)


def abstract(model, example):
  return flax.linen.meta.unbox(jax.eval_shape(
      model.init, jax.random.PRNGKey(0), **example))["params"]


def flat(tree):
  return {"/".join(k): v for k, v in
          flax.traverse_util.flatten_dict(tree).items()}


@pytest.mark.parametrize("config,module,lib", [
    (VILT, Vilt, vilt_lib), (METER, Meter, meter_lib)])
def test_student_copies_the_odd_teacher_layers(config, module, lib):
  example = lib.example_inputs(config, 1, 6)
  teacher = jax.jit(module(config).init)(jax.random.PRNGKey(0), **example)
  teacher = flax.linen.meta.unbox(teacher)["params"]
  student_config = distill.student_config(config)
  student = distill.init_student(config, teacher)
  # The student's tree is exactly what the half-depth model expects.
  want = abstract(module(student_config), example)
  assert jax.tree.structure(student) == jax.tree.structure(want)
  for (k, a), b in zip(flat(student).items(), flat(want).values()):
    assert a.shape == b.shape, k
  s, t = flat(student), flat(teacher)
  if config is VILT:
    pairs = [("vilt/layer_0/", "vilt/layer_1/"),
             ("vilt/layer_1/", "vilt/layer_3/")]
  else:
    pairs = [("meter/vision/layer_1/", "meter/vision/layer_3/"),
             ("meter/text/layer_0/", "meter/text/layer_1/"),
             ("meter/text_layer_0/", "meter/text_layer_1/"),
             ("meter/image_layer_0/", "meter/image_layer_1/")]
  for student_prefix, teacher_prefix in pairs:
    keys = [k for k in s if k.startswith(student_prefix)]
    assert keys
    for k in keys:
      np.testing.assert_array_equal(
          s[k], t[teacher_prefix + k[len(student_prefix):]])
  # Outside the layers: copied unchanged.
  for k in s:
    if "layer_" not in k:
      np.testing.assert_array_equal(s[k], t[k])


def test_odd_depth_is_an_error():
  with pytest.raises(ValueError, match="vision_num_layers=11 does not halve"):
    distill.student_config(MeterConfig())
  assert distill.student_config(
      MeterConfig(vision_num_layers=12)).vision_num_layers == 6


def test_kd_maps_pair_student_i_with_teacher_2i_and_2i_plus_1():
  rng = np.random.default_rng(0)
  t_attn = [jnp.asarray(rng.random((2, 2, 3, 3)), jnp.float32)
            for _ in range(4)]
  t_hidden = [jnp.asarray(rng.random((2, 3, 5)), jnp.float32)
              for _ in range(5)]
  teacher = {"attentions": tuple(t_attn), "hidden_states": tuple(t_hidden)}
  # A student that reproduces exactly the mapped teacher tensors.
  student = {"attentions": (t_attn[1], t_attn[3]),
             "hidden_states": (t_hidden[0], t_hidden[2], t_hidden[4])}
  out = distill.distill_losses(student, teacher)
  np.testing.assert_allclose(out["attn"], 0.0, atol=1e-7)
  np.testing.assert_allclose(out["hidden"], 0.0, atol=1e-7)
  shifted = {"attentions": (t_attn[0], t_attn[2]),
             "hidden_states": (t_hidden[1], t_hidden[3], t_hidden[4])}
  out = distill.distill_losses(shifted, teacher)
  assert (np.asarray(out["attn"]) > 0).all()
  assert (np.asarray(out["hidden"]) > 0).all()


def test_kd_terms_follow_the_requested_outputs():
  attn = (jnp.ones((1, 1, 2, 2)),)
  only_attn = distill.distill_losses({"attentions": attn},
                                     {"attentions": attn * 2})
  assert set(only_attn) == {"attn"}
