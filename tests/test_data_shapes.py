"""shapes_vqa: answers re-derived from the scene, drawing, determinism, the builder."""

import io
import re

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from pumer_jax.data import shapes_vqa

TINY = dict(image_size=48, num_train=12, num_validation=4, num_test=4, max_objects=4)


def _find(objects, **attributes):
  return [o for o in objects if all(getattr(o, k) == v for k, v in attributes.items())]


def _one(objects, **attributes):
  found = _find(objects, **attributes)
  assert len(found) == 1, f"question names {attributes}, which match {len(found)} objects"
  return found[0]


def rederive_answer(question: str, objects) -> str:
  """The answer, computed from the question text and the objects alone."""
  if m := re.fullmatch(r"what color is the (?:(small|large) )?(\w+)\?", question):
    attributes = {"shape": m[2]} | ({"size": m[1]} if m[1] else {})
    return _one(objects, **attributes).color
  if m := re.fullmatch(r"what shape is the (?:(small|large) )?(\w+) object\?", question):
    attributes = {"color": m[2]} | ({"size": m[1]} if m[1] else {})
    return _one(objects, **attributes).shape
  if m := re.fullmatch(r"what size is the (\w+) (\w+)\?", question):
    return _one(objects, color=m[1], shape=m[2]).size
  if m := re.fullmatch(r"how many (\w+) objects are there\?", question):
    return str(len(_find(objects, color=m[1])))
  if m := re.fullmatch(r"how many (\w+)s are there\?", question):
    return str(len(_find(objects, shape=m[1])))
  if m := re.fullmatch(r"is there a (\w+) (\w+)\?", question):
    return "yes" if _find(objects, color=m[1], shape=m[2]) else "no"
  if m := re.fullmatch(r"is the (\w+) (\w+) (left or right of|above or below) the (\w+) (\w+)\?",
                       question):
    a, b = _one(objects, color=m[1], shape=m[2]), _one(objects, color=m[4], shape=m[5])
    if m[3] == "left or right of":
      return "left" if a.x < b.x else "right"
    return "above" if a.y < b.y else "below"
  raise AssertionError(f"unknown question form: {question!r}")


def test_answers_are_correct_for_the_scene():
  kinds = set()
  for index in range(400):
    scene, question = shapes_vqa.generate_example(3, index)
    assert question.answer == rederive_answer(question.text, scene.objects), question
    assert question.answer in shapes_vqa.ANSWERS
    assert all(0 <= i < len(scene.objects) for i in question.referents)
    kinds.add(question.kind)
  assert kinds == set(shapes_vqa.QUESTION_TYPES)


def test_generator_is_a_pure_function_of_seed_split_index():
  a = shapes_vqa.generate_example(7, 5, "validation")
  assert a == shapes_vqa.generate_example(7, 5, "validation")
  assert a != shapes_vqa.generate_example(7, 6, "validation")
  assert a != shapes_vqa.generate_example(8, 5, "validation")
  assert a != shapes_vqa.generate_example(7, 5, "train")
  np.testing.assert_array_equal(shapes_vqa.render(a[0]), shapes_vqa.render(a[0]))


def test_objects_are_distinct_and_separate():
  for index in range(100):
    scene, _ = shapes_vqa.generate_example(0, index)
    names = [o.name for o in scene.objects]
    assert len(set(names)) == len(names) >= 2
    for i, a in enumerate(scene.objects):
      assert a.radius <= a.x <= scene.image_size - a.radius
      for b in scene.objects[i + 1:]:
        assert np.hypot(a.x - b.x, a.y - b.y) > a.radius + b.radius


def test_render_draws_each_object_in_its_colour_on_a_mostly_background_image():
  patch = 16
  for index in range(20):
    scene, _ = shapes_vqa.generate_example(0, index)
    image = shapes_vqa.render(scene)
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    covered = np.zeros((96, 96), bool)
    for obj in scene.objects:
      centre = image[int(obj.y), int(obj.x)].astype(int)
      np.testing.assert_allclose(centre, shapes_vqa.COLORS[obj.color], atol=7)
      covered |= shapes_vqa.object_mask(obj, 96)
    # Patches (16x16) that any object touches: a minority.
    touched = covered.reshape(6, patch, 6, patch).any(axis=(1, 3))
    assert touched.mean() < 0.5
    # Background pixels are greyish: far from every saturated object colour.
    background = image[~covered].astype(int)
    assert (background.max(-1) - background.min(-1)).mean() < 40


def test_questions_tokenize_without_unknown_words():
  tokenizer = shapes_vqa.tokenizer()
  assert len(tokenizer) == 5 + len(shapes_vqa.VOCAB)
  for index in range(200):
    _, question = shapes_vqa.generate_example(0, index)
    ids = tokenizer(question.text)["input_ids"]
    assert tokenizer.unk_token_id not in ids, question.text
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert len(ids) == len(question.text.replace("?", " ?").split()) + 2


def test_bad_object_counts_are_rejected():
  with pytest.raises(ValueError, match="max_objects"):
    shapes_vqa.generate_example(0, 0, min_objects=2, max_objects=9)


def _prepare(data_dir):
  builder = shapes_vqa.ShapesVqa(config=shapes_vqa.ShapesVqaConfig(name="tiny", **TINY),
                                 data_dir=str(data_dir))
  builder.download_and_prepare()
  return builder


def test_builder_writes_the_generated_examples(tmp_path):
  builder = _prepare(tmp_path)
  sources = builder.as_data_source(decoders={"image": tfds.decode.SkipDecoding()})
  assert {k: len(v) for k, v in sources.items()} == {"train": 12, "validation": 4, "test": 4}
  for split, source in sources.items():
    seen = set()
    for record in range(len(source)):
      example = source[record]
      index = int(example["question_id"])
      seen.add(index)
      scene, question = shapes_vqa.generate_example(
          0, index, split, image_size=48, max_objects=4)
      assert example["image_id"] == index
      assert example["question"].decode() == question.text
      assert [a.decode() for a in example["answers"]] == [question.answer] * 10
      assert example["question_type"].decode() == question.kind
      np.testing.assert_array_equal(example["referents"], question.referents)
      assert [c.decode() for c in example["objects"]["color"]] == [o.color for o in scene.objects]
      assert [s.decode() for s in example["objects"]["shape"]] == [o.shape for o in scene.objects]
      np.testing.assert_allclose(np.stack(example["objects"]["center"]),
                                 [(o.y, o.x) for o in scene.objects], rtol=1e-6)
      pixels = np.asarray(Image.open(io.BytesIO(example["image"])))
      np.testing.assert_array_equal(pixels, shapes_vqa.render(scene))
    assert seen == set(range(len(source)))


def test_builder_is_deterministic_to_the_byte(tmp_path):
  first, second = _prepare(tmp_path / "a"), _prepare(tmp_path / "b")
  files = sorted(p.name for p in first.data_path.iterdir() if "array_record" in p.name)
  assert len(files) == 3
  for name in files:
    assert (first.data_path / name).read_bytes() == (second.data_path / name).read_bytes()


def test_patch_aligned_centres_objects_inside_one_patch():
  options = dict(image_size=96, object_scale=0.72, outline=True, patch_aligned=16)
  for index in range(40):
    scene, question = shapes_vqa.generate_example(0, index, "train", **options)
    assert question.answer == rederive_answer(question.text, scene.objects)
    for o in scene.objects:
      for v in (o.x, o.y):
        assert (v / 16) % 1 == 0.5  # a patch centre
      mask = shapes_vqa.object_mask(o, 96)
      ys, xs = np.nonzero(mask)
      assert len(set(ys // 16)) == 1 and len(set(xs // 16)) == 1  # one patch


def test_patch_aligned_defaults_off_and_rejects_bad_values():
  plain = shapes_vqa.generate_example(0, 3, "train")
  assert plain == shapes_vqa.generate_example(0, 3, "train", patch_aligned=0)
  with pytest.raises(ValueError, match="divisor"):
    shapes_vqa.generate_example(0, 0, image_size=96, patch_aligned=10)
  with pytest.raises(ValueError, match="patch_aligned"):
    shapes_vqa.generate_example(0, 0, image_size=96, patch_aligned=-16)
  with pytest.raises(ValueError, match="exclude"):
    shapes_vqa.generate_example(0, 0, image_size=96, patch_aligned=16, position_grid=4)
  with pytest.raises(ValueError, match="no patch centre"):
    shapes_vqa.generate_example(0, 0, image_size=64, patch_aligned=32, object_scale=2.5)


def test_position_share_asks_more_position_questions_and_defaults_off():
  kinds = [shapes_vqa.generate_example(0, i, "train", position_share=1.0)[1].kind
           for i in range(30)]
  assert kinds.count("position") >= 25  # all but scenes with no two objects apart
  for i in range(30):
    assert (shapes_vqa.generate_example(0, i, "train")
            == shapes_vqa.generate_example(0, i, "train", position_share=0.0))
  with pytest.raises(ValueError, match="position_share"):
    shapes_vqa.generate_example(0, 0, position_share=1.5)


def test_absolute_position_questions_name_one_object_and_its_half():
  asked = 0
  for i in range(60):
    scene, q = shapes_vqa.generate_example(
        0, i, "train", image_size=64, patch_aligned=16, object_scale=1.1,
        position_share=1.0, position_question="absolute")
    if q.kind != "position":
      continue
    asked += 1
    (k,) = q.referents
    o, centre = scene.objects[k], scene.image_size / 2
    assert q.text == f"is the {o.name} " + (
        "left or right?" if q.answer in ("left", "right") else "above or below?")
    want = {"left": o.x < centre, "right": o.x > centre,
            "above": o.y < centre, "below": o.y > centre}
    assert want[q.answer], (q, o)
  assert asked >= 55  # patch-aligned centres are never on the centre lines
  with pytest.raises(ValueError, match="position_question"):
    shapes_vqa.generate_example(0, 0, position_question="diagonal")


def test_train_position_share_leaves_validation_and_test_alone(tmp_path):
  plain, shared = (
      shapes_vqa.ShapesVqa(config=shapes_vqa.ShapesVqaConfig(name=name, **TINY, **extra),
                           data_dir=str(tmp_path))
      for name, extra in (("plain", {}), ("shared", dict(train_position_share=1.0))))
  for b in (plain, shared):
    b.download_and_prepare()
  skip = {"image": tfds.decode.SkipDecoding()}
  for split in ("validation", "test"):
    a, b = (x.as_data_source(split=split, decoders=skip) for x in (plain, shared))
    assert [a[i]["question"] for i in range(len(a))] == [b[i]["question"] for i in range(len(b))]
  train = shared.as_data_source(split="train", decoders=skip)
  kinds = [train[i]["question_type"].decode() for i in range(len(train))]
  assert kinds.count("position") > len(kinds) / 2
