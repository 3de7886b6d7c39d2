"""The patch head: per-patch targets from the scene, the loader, the head, the loss."""

import numpy as np
import pytest

import flax.linen as nn
import jax
import jax.numpy as jnp

from pumer_jax.data import pipeline, shapes_vqa
from pumer_jax.data.shapes_patches import PATCH_CLASSES, patch_targets, stored_objects
from pumer_jax.data.shapes_scene import ShapeObject, generate_example, object_mask
from pumer_jax.models.vilt import Vilt, example_inputs
from pumer_jax.models.vilt_config import ViltConfig
from pumer_jax.train import finetune, losses

import train_fixtures


def _square(color, size, x, y, half_side):
  """A square whose side covers the pixels with centres within `half_side`."""
  return ShapeObject(color, "square", size, x, y, half_side / 0.85)


def test_patch_targets_by_hand():
  # 32x32 image, 4x4 grid of 8x8 patches.
  a = _square("red", "large", 8.0, 8.0, 4.0)   # pixels 4..11 both ways: a
  # quarter of each of patches (0,0), (0,1), (1,0), (1,1): the minimum.
  b = _square("blue", "small", 26.0, 26.0, 2.0)  # pixels 24..27: 1/4 of (3,3)
  c = _square("green", "small", 17.0, 28.0, 1.5)  # 1 px in column 1, 3 in 2:
  # 4/64 and 12/64 of patches (3,1) and (3,2), both under a quarter.
  got = patch_targets([a, b, c], 32, 4).reshape(4, 4)
  cls = PATCH_CLASSES.index
  want = np.zeros((4, 4), np.int32)
  want[:2, :2] = cls("large red square")
  want[3, 3] = cls("small blue square")
  np.testing.assert_array_equal(got, want)


def test_patch_targets_take_the_object_covering_most():
  # 16x16 image, 2x2 grid. Both squares span rows 0..7; `left` columns 0..5,
  # `right` columns 6..13: 48 and 16 of patch (0,0)'s 64 pixels, 0 and 48
  # of patch (0,1)'s.
  left = _square("red", "small", 2.0, 4.0, 4.0)
  right = _square("cyan", "large", 10.0, 4.0, 4.0)
  assert object_mask(left, 16)[:8, :8].sum() == 48
  assert object_mask(right, 16)[:8, :8].sum() == 16
  cls = PATCH_CLASSES.index
  for order in ([left, right], [right, left]):
    np.testing.assert_array_equal(
        patch_targets(order, 16, 2),
        [cls("small red square"), cls("large cyan square"), 0, 0])


def test_patch_classes_name_every_object_once():
  assert PATCH_CLASSES[0] == "background"
  assert len(PATCH_CLASSES) == 1 + 2 * 6 * 3 == len(set(PATCH_CLASSES))


def test_patch_targets_reject_a_grid_that_does_not_tile():
  with pytest.raises(ValueError, match="does not tile a 30x30 image"):
    patch_targets([], 30, 4)


def test_loader_yields_the_targets_of_the_stored_scene(tmp_path):
  builder, batch = train_fixtures.scene_batch(tmp_path)
  assert batch["patch_targets"].shape == (8, 16)
  assert batch["patch_targets"].dtype == np.int32
  for row, index in zip(batch["patch_targets"], batch["question_id"]):
    scene, _ = generate_example(0, int(index), "train", image_size=32,
                                max_objects=3, object_scale=1.5)
    np.testing.assert_array_equal(row, patch_targets(scene.objects, 32, 4))
  source = builder.as_data_source()["train"]
  assert [o.name for o in stored_objects(source[0]["objects"])] == [
      o.name for o in generate_example(0, int(source[0]["question_id"]),
                                       "train", image_size=32, max_objects=3,
                                       object_scale=1.5)[0].objects]


def test_loader_names_a_dataset_without_objects():
  from PIL import Image
  import io
  buffer = io.BytesIO()
  Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="PNG")
  source = [{"question_id": k, "image_id": k, "image": buffer.getvalue(),
             "question": "what color is the circle?", "answers": ["red"] * 10}
            for k in range(4)]
  loader = pipeline.make_loader(
      source, "train", batch_size=4, image_size=(8, 8), text_length=8,
      tokenizer=shapes_vqa.tokenizer(), task="vqa", train=True, seed=0,
      answer_vocab=shapes_vqa.ANSWERS, shard_index=0, shard_count=1,
      patch_grid=2)
  with pytest.raises(ValueError, match="has no `objects` feature"):
    next(iter(loader))


def _head_config(**changes):
  return ViltConfig(**{**train_fixtures.TINY_VILT, "patch_classes": 7,
                        "patch_head_layer": 2, **changes})


def _init(model, inputs):
  return nn.meta.unbox(model.init(jax.random.PRNGKey(0), **inputs))


def test_patch_head_reads_its_layer_output_and_leaves_the_rest_alone():
  config = _head_config()
  model = Vilt(config)
  inputs = example_inputs(config, 2, 8)
  inputs["pixel_values"] = jax.random.normal(jax.random.PRNGKey(1),
                                             inputs["pixel_values"].shape)
  variables = _init(model, inputs)
  out = model.apply(variables, **inputs, output_patch_logits=True,
                    output_hidden_states=True)
  assert out["patch_logits"].shape == (2, 16, 7)
  hidden = out["hidden_states"][2][:, 8 + 1:]  # text, image [CLS], patches
  head = variables["params"]["patch_head"]
  np.testing.assert_allclose(out["patch_logits"],
                             hidden @ head["kernel"] + head["bias"],
                             rtol=1e-5, atol=1e-5)
  plain = model.apply(variables, **inputs)
  assert "patch_logits" not in plain and "hidden_states" not in plain
  np.testing.assert_array_equal(plain["logits"], out["logits"])


@pytest.mark.parametrize("changes, message", [
    (dict(patch_head_layer=0), r"patch_head_layer=0 must name a layer in \[1, "),
    (dict(patch_head_layer=4), r"patch_head_layer=4 must name a layer"),
    (dict(patch_classes=-1), "patch_classes=-1 must be >= 0"),
])
def test_bad_patch_head_settings(changes, message):
  with pytest.raises(ValueError, match=message):
    _head_config(**changes)


def test_patch_logits_need_a_head():
  config = _head_config(patch_classes=0)
  model = Vilt(config)
  inputs = example_inputs(config, 1, 8)
  variables = _init(model, inputs)
  with pytest.raises(ValueError, match="needs a patch head"):
    model.apply(variables, **inputs, output_patch_logits=True)


def test_patch_ce_and_object_accuracy():
  logits = jnp.log(jnp.array([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]],
                              [[0.2, 0.2, 0.6], [0.5, 0.4, 0.1]]]))
  targets = jnp.array([[0, 1], [2, 1]])
  ce, accuracy = losses.patch_ce(logits, targets)
  np.testing.assert_allclose(
      ce, [-(np.log(0.7) + np.log(0.8)) / 2, -(np.log(0.6) + np.log(0.4)) / 2],
      rtol=1e-6)
  assert float(accuracy) == pytest.approx(2 / 3)  # object patches: 1 ok, 2 ok, 1 wrong


def test_the_loss_trains_the_head_with_its_weight():
  config = train_fixtures.tiny_config(**{
      "model.patch_classes": 7, "model.patch_head_layer": 2,
      "loss.patch_weight": 0.5})
  model, _, example = finetune.build_model(config)
  params = _init(model, example)["params"]
  batch = train_fixtures.random_batch(0)
  batch["patch_targets"] = np.random.default_rng(0).integers(
      0, 7, (8, 16)).astype(np.int32)
  loss_fn = finetune.make_loss_fn(model, config)
  grads, metrics = jax.grad(loss_fn, has_aux=True)(
      params, None, batch, None, jax.random.PRNGKey(1), 0)
  assert float(metrics["loss"]) == pytest.approx(
      float(metrics["task_loss"]) + 0.5 * float(metrics["patch_loss"]), rel=1e-5)
  assert float(jnp.abs(grads["patch_head"]["kernel"]).sum()) > 0
  # Without the weight the head is left out of the loss.
  off = train_fixtures.tiny_config(**{
      "model.patch_classes": 7, "model.patch_head_layer": 2})
  model_off, _, _ = finetune.build_model(off)
  grads_off, _ = jax.grad(finetune.make_loss_fn(model_off, off), has_aux=True)(
      params, None, batch, None, jax.random.PRNGKey(1), 0)
  assert float(jnp.abs(grads_off["patch_head"]["kernel"]).sum()) == 0


def test_a_patch_weight_without_a_head_is_an_error():
  config = train_fixtures.tiny_config(**{"loss.patch_weight": 1.0})
  model, _, _ = finetune.build_model(config)
  with pytest.raises(ValueError, match="trains a patch head the model lacks"):
    finetune.make_loss_fn(model, config)


def test_a_reduced_model_with_a_patch_head_initialises_and_refuses_patch_logits():
  from pumer_jax.reduce import ReduceConfig
  config = _head_config(reduce=ReduceConfig(
      method="pumer", layers=(0,), prune_ratio=0.2, image_merge_ratio=0.2,
      text_merge_ratio=0.2))
  model = Vilt(config)
  inputs = example_inputs(config, 1, 8)
  variables = _init(model, inputs)
  assert variables["params"]["patch_head"]["kernel"].shape == (32, 7)
  assert "logits" in model.apply(variables, **inputs)
  with pytest.raises(ValueError, match="the reducer changed the tokens before "
                     "layer 2's output"):
    model.apply(variables, **inputs, output_patch_logits=True)


def _patch_head_script():
  import importlib.util
  import pathlib
  path = pathlib.Path(__file__).parent.parent / "benchmarks/shapes_patch_head.py"
  spec = importlib.util.spec_from_file_location("shapes_patch_head", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_patch_head_attributes_by_hand():
  index = {name: i for i, name in enumerate(PATCH_CLASSES)}
  target = np.array([index["small red circle"]] * 4)
  predicted = np.array([index["small red circle"],     # all right
                        index["small red square"],     # shape wrong
                        index["large blue circle"],    # only shape right
                        0])                            # background: all wrong
  hits = _patch_head_script().attribute_hits(predicted, target)
  assert hits["joint"].tolist() == [True, False, False, False]
  assert hits["size"].tolist() == [True, True, False, False]
  assert hits["color"].tolist() == [True, True, False, False]
  assert hits["shape"].tolist() == [True, False, True, False]
