"""grain loaders: batch format, evaluation coverage, sharding, preprocessing; VQA answers."""

import io
import pathlib
import shutil

import numpy as np
from PIL import Image
import pytest

from pumer_jax.data import answers, pipeline, shapes_vqa

TOKENIZER = shapes_vqa.tokenizer()
WORDS = ["what", "color", "is", "the", "circle", "?", "red", "blue", "a"]


def _png(color, size=(10, 6)) -> bytes:
  buffer = io.BytesIO()
  Image.new("RGB", size, color).save(buffer, format="PNG")
  return buffer.getvalue()


def _loader(source, task, *, train=False, batch_size=4, **kwargs):
  options = dict(batch_size=batch_size, image_size=(8, 12), text_length=6,
                 tokenizer=TOKENIZER, task=task, train=train, seed=0,
                 shard_index=0, shard_count=1)
  options.update(kwargs)
  return pipeline.make_loader(source, "validation", **options)


def _vqa_source(n):
  """A plain list of records in the vqa_v2 layout; image k has red value 10 k."""
  return [{"question_id": 100 + k, "image_id": k, "image": _png((10 * k, 0, 255)),
           "question": "what color is the circle?",
           "answers": [["red", "blue"][k % 2]] * 10} for k in range(n)]


@pytest.fixture(scope="module")
def shapes_builder(tmp_path_factory):
  config = shapes_vqa.ShapesVqaConfig(name="pipeline_test", image_size=32, num_train=22,
                                      num_validation=11, num_test=1, max_objects=3)
  builder = shapes_vqa.ShapesVqa(config=config, data_dir=str(tmp_path_factory.mktemp("shapes")))
  builder.download_and_prepare()
  return builder


def test_training_batches_have_the_contract_shapes(shapes_builder):
  loader = pipeline.make_loader(
      shapes_builder, "train", batch_size=8, image_size=(32, 32), text_length=16,
      tokenizer=TOKENIZER, task="vqa", train=True, seed=1, answer_vocab=shapes_vqa.ANSWERS,
      num_epochs=2, shard_index=0, shard_count=1)
  batches = list(loader)
  assert len(batches) == 5  # 2 epochs x 22 examples, batches of 8, remainder dropped
  first = batches[0]
  a = len(shapes_vqa.ANSWERS)
  expected = {"input_ids": ((8, 16), np.int32), "attention_mask": ((8, 16), np.int32),
              "token_type_ids": ((8, 16), np.int32), "pixel_values": ((8, 32, 32, 3), np.float32),
              "labels": ((8, a), np.float32), "valid": ((8,), np.bool_),
              "example_id": ((8,), np.int64), "question_id": ((8,), np.int64)}
  assert {k: (v.shape, v.dtype) for k, v in first.items()} == expected
  assert first["valid"].all() and (first["token_type_ids"] == 0).all()
  source = pipeline.data_source(shapes_builder, "train")
  for batch in batches:
    for row, record in enumerate(batch["example_id"]):
      example = source[int(record)]
      # One-hot soft score on the stored answer; the question's tokens, then padding.
      assert shapes_vqa.ANSWERS[batch["labels"][row].argmax()] == example["answers"][0].decode()
      assert batch["labels"][row].sum() == 1.0
      ids = TOKENIZER(example["question"].decode())["input_ids"]
      np.testing.assert_array_equal(batch["input_ids"][row, :len(ids)], ids)
      assert (batch["input_ids"][row, len(ids):] == TOKENIZER.pad_token_id).all()
      np.testing.assert_array_equal(batch["attention_mask"][row], np.arange(16) < len(ids))
  # Pixels: the PNG decoded and scaled by ViLT's 0.5/0.5.
  pixels = np.asarray(Image.open(io.BytesIO(source[int(first["example_id"][0])]["image"])))
  np.testing.assert_allclose(first["pixel_values"][0], (pixels / 255 - 0.5) / 0.5, atol=1e-6)
  # Each epoch is a new permutation of all 22 examples; batches run across the boundary.
  ids = np.concatenate([b["example_id"] for b in batches])  # [40]
  assert sorted(ids[:22]) == list(range(22))
  assert len(set(ids[22:])) == 18 and not np.array_equal(ids[:18], ids[22:])


@pytest.mark.parametrize("shard_count", [1, 2, 3])
def test_evaluation_covers_every_example_exactly_once(shapes_builder, shard_count):
  shards = [list(pipeline.make_loader(
      shapes_builder, "validation", batch_size=2, image_size=(32, 32), text_length=16,
      tokenizer=TOKENIZER, task="vqa", train=False, answer_vocab=shapes_vqa.ANSWERS,
      shard_index=i, shard_count=shard_count)) for i in range(shard_count)]
  assert len({len(batches) for batches in shards}) == 1  # every host runs the same steps
  ids = np.concatenate([b["example_id"] for batches in shards for b in batches])
  valid = np.concatenate([b["valid"] for batches in shards for b in batches])
  assert sorted(ids[valid]) == list(range(11))
  assert (ids[~valid] == -1).all()
  assert all(b["pixel_values"].shape == (2, 32, 32, 3) for batches in shards for b in batches)


def test_training_shards_are_disjoint_and_equal(shapes_builder):
  seen = []
  for i in range(3):
    loader = pipeline.make_loader(
        shapes_builder, "train", batch_size=7, image_size=(32, 32), text_length=16,
        tokenizer=TOKENIZER, task="vqa", train=True, answer_vocab=shapes_vqa.ANSWERS,
        num_epochs=1, shard_index=i, shard_count=3)
    (batch,) = list(loader)  # 22 // 3 = 7 examples per shard: one batch each
    seen.append(set(batch["example_id"].tolist()))
  assert all(len(s) == 7 for s in seen)
  assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and not (seen[0] & seen[2])


def test_clip_normalisation_and_resizing_of_a_plain_source():
  source = _vqa_source(3)
  (batch,) = list(_loader(source, "vqa", normalize="clip", answer_vocab=["red", "blue"],
                          batch_size=3))
  assert batch["pixel_values"].shape == (3, 8, 12, 3)
  mean = np.array([0.48145466, 0.4578275, 0.40821073])
  std = np.array([0.26862954, 0.26130258, 0.27577711])
  for k in range(3):
    expected = (np.array([10 * k, 0, 255]) / 255 - mean) / std  # a solid colour survives resizing
    np.testing.assert_allclose(batch["pixel_values"][k], np.broadcast_to(expected, (8, 12, 3)),
                               atol=1e-5)
  np.testing.assert_array_equal(batch["question_id"], [100, 101, 102])
  np.testing.assert_array_equal(batch["labels"], [[1, 0], [0, 1], [1, 0]])


def test_crop_keeps_the_centre():
  image = np.zeros((20, 80, 3), np.uint8)
  image[:, 20:60] = 255  # a white centre band between black sides
  cropped = pipeline.load_image(image, (10, 10), "crop")  # resized to 10x40, centre 10 kept
  assert cropped.shape == (10, 10, 3) and cropped.min() >= 250
  squashed = pipeline.load_image(image, (10, 10), "squash")  # everything kept, squeezed
  assert squashed[:, 0].max() < 30 and squashed[:, 5].min() >= 250


def test_long_text_is_truncated_keeping_sep_and_empty_text_is_an_error():
  source = _vqa_source(1)
  source[0]["question"] = "what color is the circle circle circle circle?"
  (batch,) = list(_loader(source, "vqa", answer_vocab=["red"], batch_size=1))
  ids = TOKENIZER(source[0]["question"])["input_ids"]
  np.testing.assert_array_equal(batch["input_ids"][0], ids[:5] + [TOKENIZER.sep_token_id])
  assert batch["attention_mask"][0].all()
  source[0]["question"] = "  "
  with pytest.raises(ValueError, match=r"record 0 \(question_id=100\).*empty"):
    list(_loader(source, "vqa", answer_vocab=["red"], batch_size=1))


def test_ve_and_nlvr2_labels_and_image_pairs():
  ve = [{"pair_id": f"p{k}", "image": _png((k, k, k)), "hypothesis": "a red circle",
         "label": k % 3} for k in range(5)]
  batches = list(_loader(ve, "ve", batch_size=2))
  assert len(batches) == 3
  label = np.concatenate([b["label"] for b in batches])
  valid = np.concatenate([b["valid"] for b in batches])
  assert label.dtype == np.int32
  np.testing.assert_array_equal(label[valid], [0, 1, 2, 0, 1])
  nlvr = [{"identifier": f"dev-{k}-0-0", "sentence": "the circle is blue",
           "image0": _png((0, 0, 0)), "image1": _png((255, 255, 255)), "label": k % 2}
          for k in range(3)]
  (batch,) = list(_loader(nlvr, "nlvr2", batch_size=3))
  assert batch["pixel_values"].shape == (3, 2, 8, 12, 3)
  assert (batch["pixel_values"][:, 0] == -1).all() and (batch["pixel_values"][:, 1] == 1).all()
  np.testing.assert_array_equal(batch["label"], [0, 1, 0])


def test_retrieval_enumerates_pairs_captions_and_images():
  num_images = 3
  source = [{"image_id": 50 + i, "image": _png((40 * i, 0, 0)),
             "captions": [f"{WORDS[i]} {WORDS[j]}" for j in range(5)]} for i in range(num_images)]
  pairs = list(_loader(source, "retrieval", batch_size=4))
  caption_index = np.concatenate([b["caption_index"] for b in pairs])
  image_index = np.concatenate([b["image_index"] for b in pairs])
  valid = np.concatenate([b["valid"] for b in pairs])
  assert sorted(caption_index[valid]) == list(range(15))
  np.testing.assert_array_equal(image_index[valid], caption_index[valid] // 5)
  for b in pairs:
    for row in np.flatnonzero(b["valid"]):
      i, j = divmod(int(b["caption_index"][row]), 5)
      ids = TOKENIZER(f"{WORDS[i]} {WORDS[j]}")["input_ids"]
      np.testing.assert_array_equal(b["input_ids"][row, :len(ids)], ids)
      assert np.isclose(b["pixel_values"][row, 0, 0, 0], (40 * i / 255 - 0.5) / 0.5, atol=1e-6)
  captions = list(_loader(source, "retrieval_captions", batch_size=8))
  assert "pixel_values" not in captions[0]
  ids = np.concatenate([b["example_id"] for b in captions])
  assert sorted(ids[np.concatenate([b["valid"] for b in captions])]) == list(range(15))
  (images,) = list(_loader(source, "retrieval_images", batch_size=3))
  assert "input_ids" not in images
  np.testing.assert_array_equal(images["image_index"], [0, 1, 2])
  assert images["pixel_values"].shape == (3, 8, 12, 3)


def test_bad_arguments_are_rejected():
  source = _vqa_source(2)
  with pytest.raises(ValueError, match="answer_vocab"):
    _loader(source, "vqa")
  with pytest.raises(ValueError, match="task"):
    _loader(source, "captioning")
  with pytest.raises(ValueError, match="one pass"):
    _loader(source, "ve", num_epochs=2)
  with pytest.raises(ValueError, match="fewer than one batch"):
    _loader(source, "ve", train=True, batch_size=4)


@pytest.mark.parametrize("raw, normalised", [
    ("Two", "2"), ("the dog.", "dog"), ("dont", "don't"), ("yes!", "yes"),
    ("A cat", "cat"), ("3.5", "3.5"), ("1,000", "1000"), ("left-hand", "left hand"),
    ("  red\tcar ", "red car"), ("none", "0"),
])
def test_answer_normalisation_follows_the_official_evaluation(raw, normalised):
  assert answers.normalize_answer(raw) == normalised


def test_soft_scores_and_vocabulary():
  index = {"2": 0, "red": 1, "no": 2}
  scores = answers.soft_scores(["two"] * 2 + ["2"] * 2 + ["Red"] + ["blue"] * 5, index)
  np.testing.assert_allclose(scores, [1.0, 1 / 3, 0.0])
  vocab = answers.build_answer_vocab(
      [["yes"] * 10, ["no"] * 6 + ["yes"] * 4, ["Two"] * 10, ["2"], []], num_answers=2)
  assert vocab == ["2", "no"]  # "2" twice; "no" and "yes" once each, tie broken alphabetically


def test_a_truncated_shard_is_named_in_the_error(shapes_builder, tmp_path):
  """A damaged array_record file fails with its path and the record, and
  the advice to prepare the dataset again."""
  copy = tmp_path / "shapes_vqa" / shapes_builder.builder_config.name
  shutil.copytree(pathlib.Path(shapes_builder.data_path).parent, copy)
  shard = next(copy.glob("*/shapes_vqa-validation.array_record*"))
  shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
  damaged = shapes_vqa.ShapesVqa(config=shapes_builder.builder_config,
                                 data_dir=str(tmp_path))
  with pytest.raises(RuntimeError, match=f"record 0 in {shard}.*prepare the "
                     "dataset again"):
    list(_loader(damaged, "vqa", answer_vocab=shapes_vqa.ANSWERS))
