"""The grounding head: per-patch "the question names the object here",
its targets by hand and from the stored scene, its loss, its training."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax.data.shapes_patches import grounding_targets
from pumer_jax.data.shapes_scene import ShapeObject, generate_example
from pumer_jax.models.vilt import Vilt, example_inputs
from pumer_jax.models.vilt_config import ViltConfig
from pumer_jax.train import finetune, losses

import train_fixtures


def _square(color, x, y, half_side):
  return ShapeObject(color, "square", "large", x, y, half_side / 0.85)


def test_grounding_targets_by_hand():
  # 32x32 image, 4x4 grid of 8x8 patches; the question names object 1 only.
  a = _square("red", 8.0, 8.0, 4.0)    # patches (0,0), (0,1), (1,0), (1,1)
  b = _square("blue", 26.0, 26.0, 2.0)  # patch (3,3)
  got = grounding_targets([a, b], [1], 32, 4).reshape(4, 4)
  want = np.zeros((4, 4), np.float32)
  want[3, 3] = 1.0
  np.testing.assert_array_equal(got, want)
  both = grounding_targets([a, b], [0, 1], 32, 4).reshape(4, 4)
  assert both.sum() == 5 and both[:2, :2].all()
  # A question naming nothing present (an absent object, a count of 0).
  assert grounding_targets([a, b], [], 32, 4).sum() == 0


def test_loader_yields_the_referents_patches(tmp_path):
  _, batch = train_fixtures.scene_batch(tmp_path, grounding=True)
  assert batch["grounding_targets"].shape == (8, 16)
  assert batch["grounding_targets"].dtype == np.float32
  named = 0
  for row, index in zip(batch["grounding_targets"], batch["question_id"]):
    scene, question = generate_example(0, int(index), "train", image_size=32,
                                       max_objects=3, object_scale=1.5)
    want = grounding_targets(scene.objects, question.referents, 32, 4)
    np.testing.assert_array_equal(row, want)
    named += bool(want.any())
  assert named > 0  # the check saw questions that name objects


def test_grounding_bce_by_hand():
  logits = jnp.array([[2.0, -1.0, 0.0, -3.0],
                      [1.0, -2.0, -1.0, -1.0]])
  targets = jnp.array([[1.0, 0.0, 1.0, 0.0],
                       [0.0, 0.0, 0.0, 0.0]])  # names nothing
  loss, accuracy = losses.grounding_bce(logits, targets)
  bce = lambda x, y: np.log1p(np.exp(-x)) if y else np.log1p(np.exp(x))
  first = 0.5 * (bce(2.0, 1) + bce(0.0, 1)) / 2 + 0.5 * (bce(-1.0, 0) + bce(-3.0, 0)) / 2
  second = np.mean([bce(v, 0) for v in (1.0, -2.0, -1.0, -1.0)])
  np.testing.assert_allclose(loss, [first, second], rtol=1e-6)
  # Named patches said: 1 of 2 (logit 0 is not > 0); others rejected: 5 of 6.
  assert float(accuracy) == pytest.approx(0.5 * (1 / 2 + 5 / 6))


def _config(**changes):
  return ViltConfig(**{**train_fixtures.TINY_VILT, "grounding_layer": 2,
                        **changes})


def test_grounding_head_reads_its_layer_and_leaves_the_answer_alone():
  config = _config()
  model = Vilt(config)
  inputs = example_inputs(config, 2, 8)
  inputs["pixel_values"] = jax.random.normal(jax.random.PRNGKey(0),
                                             inputs["pixel_values"].shape)
  variables = nn.meta.unbox(model.init(jax.random.PRNGKey(0), **inputs))
  out = model.apply(variables, **inputs, output_grounding_logits=True,
                    output_hidden_states=True)
  assert out["grounding_logits"].shape == (2, 16)
  head = variables["params"]["grounding_head"]
  want = out["hidden_states"][2][:, 8 + 1:] @ head["kernel"] + head["bias"]
  np.testing.assert_allclose(out["grounding_logits"], want[..., 0], rtol=1e-5, atol=1e-6)
  plain = model.apply(variables, **inputs)
  np.testing.assert_array_equal(plain["logits"], out["logits"])
  assert "grounding_logits" not in plain and "hidden_states" not in plain


@pytest.mark.parametrize("changes, message", [
    (dict(grounding_layer=4), r"grounding_layer=4 must be 0 \(none\) or name a layer"),
    (dict(grounding_layer=-1), r"grounding_layer=-1 must be 0"),
    (dict(grounding_layer=1, num_images=2, modality_type_vocab_size=3,
          head="nlvr2"), "the grounding head reads one image"),
])
def test_bad_grounding_settings(changes, message):
  with pytest.raises(ValueError, match=message):
    _config(**changes)


def test_the_loss_trains_the_head_with_its_weight():
  config = train_fixtures.tiny_config(**{
      "model.grounding_layer": 2, "loss.grounding_weight": 0.5})
  model, _, example = finetune.build_model(config)
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), **example))["params"]
  batch = train_fixtures.random_batch(0)
  batch["grounding_targets"] = (np.random.default_rng(0).random((8, 16)) < 0.2
                                ).astype(np.float32)
  grads, metrics = jax.grad(finetune.make_loss_fn(model, config), has_aux=True)(
      params, None, batch, None, jax.random.PRNGKey(1), 0)
  assert float(metrics["loss"]) == pytest.approx(
      float(metrics["task_loss"]) + 0.5 * float(metrics["grounding_loss"]), rel=1e-5)
  assert 0 <= float(metrics["grounding_acc"]) <= 1
  assert float(jnp.abs(grads["grounding_head"]["kernel"]).sum()) > 0
  lacking = train_fixtures.tiny_config(**{"loss.grounding_weight": 1.0})
  model, _, _ = finetune.build_model(lacking)
  with pytest.raises(ValueError, match="trains a grounding head the model lacks"):
    finetune.make_loss_fn(model, lacking)
  with pytest.raises(ValueError, match="needs a grounding head"):
    model.apply(nn.meta.unbox(model.init(jax.random.PRNGKey(0), **example)),
                **example, output_grounding_logits=True)
