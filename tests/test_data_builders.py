"""The real-dataset builders, prepared from tiny files in the official formats."""

import io
import json

from PIL import Image
import pytest
import tensorflow_datasets as tfds

from pumer_jax.data import answers, flickr30k, nlvr2, snli_ve, vqa_v2


def _write_image(path, color, size=(12, 8), fmt="JPEG") -> bytes:
  """Writes a solid-colour image (size = (W, H)); returns the file's bytes."""
  path.parent.mkdir(parents=True, exist_ok=True)
  buffer = io.BytesIO()
  Image.new("RGB", size, color).save(buffer, format=fmt)
  path.write_bytes(buffer.getvalue())
  return buffer.getvalue()


def _prepare(builder_class, data_dir, manual_dir, **kwargs):
  builder = builder_class(data_dir=str(data_dir), **kwargs)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def _records(builder, split, key):
  """All records of `split` (images as bytes), by `key`."""
  skip = {name: tfds.decode.SkipDecoding() for name, f in builder.info.features.items()
          if isinstance(f, tfds.features.Image)}
  source = builder.as_data_source(split=split, decoders=skip)
  records = [source[i] for i in range(len(source))]
  by_key = {(r[key].decode() if isinstance(r[key], bytes) else int(r[key])): r for r in records}
  assert len(by_key) == len(records)
  return by_key


def _texts(values):
  return [v.decode() for v in values]


# ----------------------------------------------------------------------------
# VQA v2
# ----------------------------------------------------------------------------


def _human_answers(*answers_and_counts):
  out = []
  for answer, count in answers_and_counts:
    out += [answer] * count
  assert len(out) == 10
  return [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(out)]


VQA_QUESTIONS = {
    "train": [(9, 90, "What color is the bus?", _human_answers(("red", 8), ("Red.", 2))),
              (10, 90, "How many dogs?", _human_answers(("two", 6), ("3", 4))),
              (11, 25, "Is it raining?", _human_answers(("no", 10)))],
    "val": [(20, 42, "What is this?", _human_answers(("a cat", 7), ("kitten", 3)))],
}
VQA_TEST = {"test2015": [(30, 1, "Where is the ball?"), (31, 2, "Who is there?")],
            "test-dev2015": [(30, 1, "Where is the ball?")]}


@pytest.fixture(scope="module")
def vqa_manual(tmp_path_factory):
  root = tmp_path_factory.mktemp("vqa_manual")
  images = {}
  for image_set, rows in VQA_QUESTIONS.items():
    subset = f"{image_set}2014"
    root.joinpath(f"v2_OpenEnded_mscoco_{subset}_questions.json").write_text(json.dumps({
        "info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {},
        "data_subtype": subset,
        "questions": [{"image_id": im, "question": q, "question_id": qid}
                      for qid, im, q, _ in rows]}))
    root.joinpath(f"v2_mscoco_{subset}_annotations.json").write_text(json.dumps({
        "info": {}, "license": {}, "data_subtype": subset,
        "annotations": [{"question_id": qid, "image_id": im, "answers": a,
                         "multiple_choice_answer": a[0]["answer"], "answer_type": "other",
                         "question_type": "what"} for qid, im, _, a in rows]}))
    for _, image_id, _, _ in rows:
      images[image_id] = _write_image(
          root / subset / f"COCO_{subset}_{image_id:012d}.jpg", (image_id, 10, 200))
  for name, rows in VQA_TEST.items():
    root.joinpath(f"v2_OpenEnded_mscoco_{name}_questions.json").write_text(json.dumps({
        "questions": [{"image_id": im, "question": q, "question_id": qid}
                      for qid, im, q in rows]}))
  for image_id in (1, 2):
    images[image_id] = _write_image(
        root / "test2015" / f"COCO_test2015_{image_id:012d}.jpg", (0, image_id * 50, 0))
  return root, images


def test_vqa_v2_examples_match_the_official_files(vqa_manual, tmp_path):
  root, images = vqa_manual
  builder = _prepare(vqa_v2.VqaV2, tmp_path, root, config="with_test")
  for split, image_set in (("train", "train"), ("validation", "val")):
    records = _records(builder, split, "question_id")
    assert sorted(records) == [qid for qid, *_ in VQA_QUESTIONS[image_set]]
    for question_id, image_id, question, human in VQA_QUESTIONS[image_set]:
      r = records[question_id]
      assert r["image_id"] == image_id
      assert r["question"].decode() == question
      assert _texts(r["answers"]) == [h["answer"] for h in human]
      assert r["image"] == images[image_id]
  for split, name in (("test", "test2015"), ("test_dev", "test-dev2015")):
    records = _records(builder, split, "question_id")
    assert sorted(records) == [qid for qid, *_ in VQA_TEST[name]]
    for question_id, image_id, question in VQA_TEST[name]:
      assert records[question_id]["question"].decode() == question
      assert records[question_id]["image"] == images[image_id]
      assert len(records[question_id]["answers"]) == 0
  # Decoded by TFDS too: a real 12x8 RGB JPEG.
  decoded = builder.as_data_source(split="validation")[0]["image"]
  assert decoded.shape == (8, 12, 3)


def test_vqa_answer_vocab_is_built_from_train_and_saved_beside_the_data(vqa_manual, tmp_path):
  root, _ = vqa_manual
  builder = _prepare(vqa_v2.VqaV2, tmp_path, root)
  # Majority answers, normalised: "red" (8 + "Red." 2), "2" ("two"), "no"; one vote each.
  assert answers.load_or_build_answer_vocab(builder) == ["2", "no", "red"]
  saved = tmp_path / "vqa_v2" / "default" / "2.0.0" / answers.ANSWER_VOCAB_FILE
  assert json.loads(saved.read_text()) == ["2", "no", "red"]
  with pytest.raises(ValueError, match="expected at most 2"):
    answers.load_or_build_answer_vocab(builder, num_answers=2)


def test_vqa_missing_files_name_the_file_and_the_source(vqa_manual, tmp_path):
  with pytest.raises(FileNotFoundError, match=r"v2_OpenEnded_mscoco_train2014_questions\.json"):
    _prepare(vqa_v2.VqaV2, tmp_path / "data", tmp_path / "no_such_dir")
  empty = tmp_path / "partial"
  empty.mkdir()
  (empty / "README").write_text("not the data")
  with pytest.raises(FileNotFoundError, match=r"visualqa\.org.*") as error:
    _prepare(vqa_v2.VqaV2, tmp_path / "data2", empty)
  assert "v2_OpenEnded_mscoco_train2014_questions.json" in str(error.value)
  # Questions present, one image missing: the error names the COCO path.
  root, _ = vqa_manual
  partial = tmp_path / "no_image"
  partial.mkdir()
  for f in root.glob("*.json"):
    (partial / f.name).write_bytes(f.read_bytes())
  missing = r"no_image/train2014/COCO_train2014_0000000000(90|25)\.jpg"
  with pytest.raises(FileNotFoundError, match=missing):
    _prepare(vqa_v2.VqaV2, tmp_path / "data3", partial)


# ----------------------------------------------------------------------------
# SNLI-VE
# ----------------------------------------------------------------------------

SNLI_VE = {
    "train": [("100.jpg#0r1e", "100", "Two dogs run.", "Animals move.", "entailment"),
              ("100.jpg#0r1n", "100", "Two dogs run.", "The dogs are hungry.", "neutral"),
              ("200.jpg#1r1c", "200", "A man sings.", "Nobody sings.", "contradiction"),
              ("200.jpg#1r2x", "200", "A man sings.", "Unclear.", "-")],
    "dev": [("300.jpg#0r1e", "300", "A child reads.", "Someone reads.", "entailment")],
    "test": [("200.jpg#2r1n", "200", "A man sings.", "He is on stage.", "neutral")],
}


def test_snli_ve_examples_match_the_official_files(tmp_path):
  root = tmp_path / "manual"
  folder = root / "Flickr30K" / "flickr30k_images"
  images = {i: _write_image(folder / f"{i}.jpg", (int(i) % 256, 0, 0))
            for i in ("100", "200", "300")}
  for split, rows in SNLI_VE.items():
    lines = [json.dumps({"Flickr30K_ID": image, "sentence1": premise, "sentence2": hypothesis,
                         "gold_label": label, "pairID": pair, "captionID": f"{image}.jpg#0",
                         "annotator_labels": [label]})
             for pair, image, premise, hypothesis, label in rows]
    root.joinpath(f"snli_ve_{split}.jsonl").write_text("\n".join(lines) + "\n")
  builder = _prepare(snli_ve.SnliVe, tmp_path / "data", root)
  for split, official in (("train", "train"), ("validation", "dev"), ("test", "test")):
    records = _records(builder, split, "pair_id")
    expected = [row for row in SNLI_VE[official] if row[4] != "-"]
    assert sorted(records) == sorted(row[0] for row in expected)
    for pair, image, premise, hypothesis, label in expected:
      r = records[pair]
      assert r["image_id"].decode() == image
      assert r["premise"].decode() == premise
      assert r["hypothesis"].decode() == hypothesis
      assert snli_ve.LABELS[r["label"]] == label
      assert r["image"] == images[image]


def test_snli_ve_missing_image_names_the_layouts_tried(tmp_path):
  root = tmp_path / "manual"
  root.mkdir()
  for split in ("train", "dev", "test"):
    root.joinpath(f"snli_ve_{split}.jsonl").write_text(json.dumps({
        "Flickr30K_ID": "7", "sentence1": "a", "sentence2": "b", "gold_label": "neutral",
        "pairID": f"{split}7"}) + "\n")
  expected = r"Flickr30K/flickr30k_images/7\.jpg.*DenotationGraph"
  with pytest.raises(FileNotFoundError, match=expected):
    _prepare(snli_ve.SnliVe, tmp_path / "data", root)


# ----------------------------------------------------------------------------
# NLVR2
# ----------------------------------------------------------------------------

NLVR2 = {
    "train": [("train-10171-0-0", "There are two dogs.", "True", 12),
              ("train-10171-0-1", "There is one dog.", "False", 12),
              ("train-55-1-3", "A bird flies left.", "True", 3)],
    "dev": [("dev-850-0-0", "The left image has a cat.", "False", None)],
    "test1": [("test1-7-2-1", "Both images are dark.", "True", None)],
}


def test_nlvr2_examples_match_the_official_files(tmp_path):
  root = tmp_path / "manual"
  images = {}
  for split, rows in NLVR2.items():
    lines = []
    for identifier, sentence, label, directory in rows:
      row = {"identifier": identifier, "sentence": sentence, "label": label,
             "synset": "dog", "left_url": "http://x/l.jpg", "right_url": "http://x/r.jpg"}
      folder = root / split
      if directory is not None:
        row["directory"] = directory
        folder = folder / str(directory)
      prefix = identifier.rsplit("-", 1)[0]
      for side in (0, 1):
        # Sentences about the same pair share its images (the file written last).
        images[(prefix, side)] = _write_image(
            folder / f"{prefix}-img{side}.png", (side * 200, len(sentence), 9), fmt="PNG")
      lines.append(json.dumps(row))
    root.joinpath(f"{split}.json").write_text("\n".join(lines) + "\n")
  builder = _prepare(nlvr2.Nlvr2, tmp_path / "data", root)
  for split, official in (("train", "train"), ("validation", "dev"), ("test", "test1")):
    records = _records(builder, split, "identifier")
    assert sorted(records) == sorted(row[0] for row in NLVR2[official])
    for identifier, sentence, label, _ in NLVR2[official]:
      r = records[identifier]
      assert r["sentence"].decode() == sentence
      assert nlvr2.LABELS[r["label"]] == label.lower()
      prefix = identifier.rsplit("-", 1)[0]
      assert r["image0"] == images[(prefix, 0)]
      assert r["image1"] == images[(prefix, 1)]


def test_nlvr2_image_names():
  assert nlvr2.image_names("dev-850-0-0") == ("dev-850-0-img0.png", "dev-850-0-img1.png")
  assert nlvr2.image_names("train-10171-0-12") == ("train-10171-0-img0.png",
                                                    "train-10171-0-img1.png")


# ----------------------------------------------------------------------------
# Flickr30k (Karpathy split)
# ----------------------------------------------------------------------------


def test_flickr30k_examples_match_the_karpathy_file(tmp_path):
  root = tmp_path / "manual"
  entries, images = [], {}
  for imgid, split in enumerate(["train", "test", "restval", "val", "train"]):
    filename = f"{1000 + imgid}.jpg"
    images[imgid] = _write_image(root / "flickr30k-images" / filename, (imgid * 40, 5, 5))
    sentences = [{"raw": f"Image {imgid} caption {j}.", "tokens": ["image", str(imgid)],
                  "imgid": imgid, "sentid": imgid * 5 + j} for j in range(5)]
    entries.append({"filename": filename, "imgid": imgid, "split": split,
                    "sentences": sentences, "sentids": [s["sentid"] for s in sentences]})
  root.joinpath("dataset_flickr30k.json").write_text(
      json.dumps({"images": entries, "dataset": "flickr30k"}))
  builder = _prepare(flickr30k.Flickr30k, tmp_path / "data", root)
  expected_ids = {"train": [0, 2, 4], "validation": [3], "test": [1]}
  for split, ids in expected_ids.items():
    records = _records(builder, split, "image_id")
    assert sorted(records) == ids
    for imgid in ids:
      r = records[imgid]
      assert r["filename"].decode() == f"{1000 + imgid}.jpg"
      assert _texts(r["captions"]) == [f"Image {imgid} caption {j}." for j in range(5)]
      assert r["image"] == images[imgid]


def test_flickr30k_missing_karpathy_file(tmp_path):
  root = tmp_path / "manual"
  root.mkdir()
  (root / "flickr30k-images").mkdir()
  with pytest.raises(FileNotFoundError, match=r"dataset_flickr30k\.json.*karpathy"):
    _prepare(flickr30k.Flickr30k, tmp_path / "data", root)
