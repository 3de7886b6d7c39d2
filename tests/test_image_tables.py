"""Each image stored once: prepared sizes, the same batches as per-question
records, grain workers, and the errors of bad official files."""

import io
import json
import os
import pickle

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from pumer_jax.data import answers, image_table, nlvr2, pipeline, shapes_vqa, snli_ve, vqa_v2

TOKENIZER = shapes_vqa.tokenizer()
QUESTIONS_PER_IMAGE = 5
WORDS = ("what", "color", "is", "the", "circle", "?")


def _jpeg(seed: int, size=(320, 240)) -> bytes:
  """A noisy JPEG (kilobytes, as photographs are, unlike a flat colour)."""
  pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3))
  buffer = io.BytesIO()
  Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
  return buffer.getvalue()


def _write_vqa(root, image_ids=(3, 7, 11, 20)):
  """Official VQA v2 train and val files: 5 questions per image, 10 answers."""
  images = {}
  for subset, offset in (("train2014", 0), ("val2014", 100)):
    ids = [i + offset for i in image_ids]
    questions, annotations = [], []
    for image_id in ids:
      path = root / subset / f"COCO_{subset}_{image_id:012d}.jpg"
      path.parent.mkdir(parents=True, exist_ok=True)
      images[(subset, image_id)] = data = _jpeg(image_id)
      path.write_bytes(data)
      for k in range(QUESTIONS_PER_IMAGE):
        qid = image_id * 10 + k
        questions.append({"image_id": image_id, "question_id": qid,
                          "question": f"{WORDS[k % 6]} is the circle?"})
        annotations.append({"question_id": qid, "image_id": image_id,
                            "answers": [{"answer": ["red", "blue"][k % 2],
                                         "answer_id": j + 1} for j in range(10)]})
    root.joinpath(f"v2_OpenEnded_mscoco_{subset}_questions.json").write_text(
        json.dumps({"questions": questions}))
    root.joinpath(f"v2_mscoco_{subset}_annotations.json").write_text(
        json.dumps({"annotations": annotations}))
  return images


def _prepare(builder_class, data_dir, manual_dir, **kwargs):
  builder = builder_class(data_dir=str(data_dir), **kwargs)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


@pytest.fixture(scope="module")
def vqa(tmp_path_factory):
  root = tmp_path_factory.mktemp("vqa_manual")
  images = _write_vqa(root)
  builder = _prepare(vqa_v2.VqaV2, tmp_path_factory.mktemp("vqa_data"), root)
  return root, images, builder


def test_each_image_is_stored_once(vqa):
  _, images, builder = vqa
  version_dir = builder.data_path
  tables = sorted(version_dir.glob("images-*.array_record"))
  assert [t.name for t in tables] == ["images-train2014.array_record",
                                      "images-val2014.array_record"]
  image_bytes = sum(len(b) for b in images.values())
  table_bytes = sum(os.path.getsize(t) for t in tables)
  # The files as released plus array_record's framing: some bytes per record,
  # and per file an index and padding to whole 64 KiB blocks (2 at most).
  assert image_bytes <= table_bytes <= image_bytes + len(tables) * 2 * 65536 + 64 * len(images)
  records = sum(os.path.getsize(p) for p in version_dir.glob("vqa_v2-*.array_record*"))
  # 40 questions with their 10 answers and no image: one 64 KiB block per
  # split's file, under half the images' bytes (one copy per question would
  # be five times them).
  assert image_bytes > 300_000
  assert records <= 2 * 2 * 65536 < image_bytes / 2


def _reference_records(root, split):
  """Per-question records with their image bytes, read from the official
  files directly (the layout version 1.0.0 stored)."""
  subset = {"train": "train2014", "validation": "val2014"}[split]
  questions = json.loads(root.joinpath(
      f"v2_OpenEnded_mscoco_{subset}_questions.json").read_text())["questions"]
  answers_of = {a["question_id"]: [h["answer"] for h in a["answers"]]
                for a in json.loads(root.joinpath(
                    f"v2_mscoco_{subset}_annotations.json").read_text())["annotations"]}
  return [{"question_id": q["question_id"], "image_id": q["image_id"],
           "image": root.joinpath(subset, f"COCO_{subset}_{q['image_id']:012d}.jpg").read_bytes(),
           "question": q["question"], "answers": answers_of[q["question_id"]]}
          for q in questions]


def _batches(source, split, train, worker_count=0):
  loader = pipeline.make_loader(
      source, split, batch_size=6, image_size=(16, 24), text_length=8,
      tokenizer=TOKENIZER, task="vqa", train=train, seed=3,
      answer_vocab=["blue", "red"], num_epochs=1 if train else None,
      shard_index=0, shard_count=1, worker_count=worker_count)
  return list(loader)


@pytest.mark.parametrize("split, train", [("train", True), ("validation", False)])
def test_batches_equal_those_of_per_question_records(vqa, split, train):
  root, _, builder = vqa
  source = pipeline.data_source(builder, split)
  # The same questions in the same order as the reference, so the same
  # shuffle picks the same rows.
  order = {int(source[i]["question_id"]): i for i in range(len(source))}
  reference = sorted(_reference_records(root, split),
                     key=lambda r: order[r["question_id"]])
  ours, theirs = _batches(builder, split, train), _batches(reference, split, train)
  assert len(ours) == len(theirs) > 0
  for a, b in zip(ours, theirs):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_records_give_decoded_images_or_their_bytes(vqa):
  _, images, builder = vqa
  encoded = builder.as_data_source(split="train", decoders={
      "image": tfds.decode.SkipDecoding()})
  decoded = builder.as_data_source(split="train")
  record = encoded[0]
  assert record["image"] == images[("train2014", int(record["image_id"]))]
  pixels = decoded[0]["image"]
  assert pixels.shape == (240, 320, 3) and pixels.dtype == np.uint8
  sliced = builder.as_data_source(split="train[:3]")
  assert len(sliced) == 3 and sliced[2]["image"].shape == (240, 320, 3)
  assert set(builder.as_data_source()) == {"train", "validation"}


def test_joined_source_pickles_for_grain_workers(vqa):
  _, _, builder = vqa
  source = pipeline.data_source(builder, "validation")
  source[0]  # opens the table in this process
  copy = pickle.loads(pickle.dumps(source))
  assert copy[5]["image"] == source[5]["image"]
  assert copy.__getitems__([1, 2])[1]["question"] == source[2]["question"]


def test_a_removed_table_names_the_fix(vqa, tmp_path):
  root, _, _ = vqa
  builder = _prepare(vqa_v2.VqaV2, tmp_path, root)
  (builder.data_path / "images-train2014.array_record").unlink()
  with pytest.raises(FileNotFoundError, match="images-train2014.*prepare it again"):
    builder.as_data_source(split="train")
  # Building the answer vocabulary reads the text alone: no table needed.
  assert answers.load_or_build_answer_vocab(builder) == ["red", "blue"]  # by count
  manifest = builder.data_path / image_table.MANIFEST
  manifest.write_text(json.dumps({"splits": {"train": "train2014"},
                                  "fields": {"image": "image_id"}}))
  with pytest.raises(ValueError, match="split 'validation' has no image table"):
    builder.as_data_source(split="validation")


def test_nlvr2_and_snli_ve_share_an_image_across_sentences(tmp_path):
  root = tmp_path / "nlvr2"
  for split, folder in (("train", "train/4"), ("dev", "dev"), ("test1", "test1")):
    (root / folder).mkdir(parents=True)
    prefix = f"{split}-1-0"
    for side in (0, 1):
      (root / folder / f"{prefix}-img{side}.png").write_bytes(_png(side))
    rows = [{"identifier": f"{prefix}-{k}", "sentence": f"s{k}", "label": "True",
             **({"directory": 4} if split == "train" else {})} for k in range(3)]
    (root / f"{split}.json").write_text("\n".join(map(json.dumps, rows)) + "\n")
  builder = _prepare(nlvr2.Nlvr2, tmp_path / "data", root)
  keys = json.loads((builder.data_path / "images-dev.keys.json").read_text())
  assert keys == ["dev-1-0-img0", "dev-1-0-img1"]  # 3 sentences, 2 images
  record = builder.as_data_source(split="validation", decoders={
      "image0": tfds.decode.SkipDecoding(), "image1": tfds.decode.SkipDecoding()})[2]
  assert record["image0"] == _png(0) and record["image1"] == _png(1)


def _png(seed) -> bytes:
  buffer = io.BytesIO()
  Image.new("RGB", (6, 4), (seed * 99, 5, 5)).save(buffer, format="PNG")
  return buffer.getvalue()


def _snli_line(pair, image):
  return json.dumps({"Flickr30K_ID": image, "sentence1": "a", "sentence2": "b",
                     "gold_label": "neutral", "pairID": pair})


def test_bad_official_files_name_the_file_and_the_id(tmp_path):
  root = tmp_path / "vqa"
  _write_vqa(root)
  questions = root / "v2_OpenEnded_mscoco_val2014_questions.json"
  full = questions.read_text()
  questions.write_text(full[: len(full) // 2])  # a download cut short
  with pytest.raises(ValueError, match=r"val2014_questions\.json is not valid JSON.*truncated"):
    _prepare(vqa_v2.VqaV2, tmp_path / "d1", root)
  questions.write_text(full)
  (root / "val2014" / "COCO_val2014_000000000107.jpg").unlink()
  with pytest.raises(FileNotFoundError,
                     match=r"question 1070 of .*val2014_questions\.json is about "
                           r"image 107, whose official file .*COCO_val2014_000000000107\.jpg"):
    _prepare(vqa_v2.VqaV2, tmp_path / "d2", root)
  snli = tmp_path / "snli"
  (snli / "flickr30k_images").mkdir(parents=True)
  (snli / "flickr30k_images" / "5.jpg").write_bytes(_jpeg(5))
  for split in ("train", "dev", "test"):
    (snli / f"snli_ve_{split}.jsonl").write_text(_snli_line(f"{split}5", "5") + "\n")
  (snli / "snli_ve_dev.jsonl").write_text(_snli_line("d5", "5") + '\n{"Flickr30K_ID": "5", "sen')
  with pytest.raises(ValueError, match=r"snli_ve_dev\.jsonl:2 is not valid JSON.*truncated"):
    _prepare(snli_ve.SnliVe, tmp_path / "d3", snli)
  # The table is what holds the image; nothing half-written is left behind.
  assert not list((tmp_path / "d3").rglob("images-*"))
  (snli / "snli_ve_dev.jsonl").write_text(_snli_line("d5", "5") + "\n")
  builder = _prepare(snli_ve.SnliVe, tmp_path / "d4", snli)
  keys = json.loads((builder.data_path / "images-flickr30k.keys.json").read_text())
  assert keys == ["5"]  # three splits, one image
  assert image_table.MANIFEST in {p.name for p in builder.data_path.iterdir()}


def test_a_damaged_table_names_the_question_and_its_file(vqa, tmp_path):
  root, _, _ = vqa
  builder = _prepare(vqa_v2.VqaV2, tmp_path, root)
  table = builder.data_path / "images-val2014.array_record"
  table.write_bytes(table.read_bytes()[:1000])  # a copy cut short
  with pytest.raises(RuntimeError, match=r"could not read split 'validation' record 0 "
                                         r"in .*vqa_v2-validation.*image '\d+' \(row \d of the image "
                                         r"table .*images-val2014\.array_record\)"):
    _batches(builder, "validation", train=False)


def test_reading_in_processes_writes_the_same_table(tmp_path):
  files = []
  for i in range(40):
    path = tmp_path / "images" / f"{i}.jpg"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(_jpeg(i, size=(16, 12)))
    files.append((f"{i:03d}", path))
  (tmp_path / "a").mkdir()
  (tmp_path / "b").mkdir()
  one = image_table.write_table(tmp_path / "a", "t", files)
  two = image_table.write_table(tmp_path / "b", "t", files, processes=2)  # 40 files: pooled
  assert one == two == sum(len(p.read_bytes()) for _, p in files)
  a, b = image_table.ImageTable(tmp_path / "a", "t"), image_table.ImageTable(tmp_path / "b", "t")
  assert [a[k] for k, _ in files] == [b[k] for k, _ in files] == [p.read_bytes() for _, p in files]


def test_a_combined_split_reads_both_tables(vqa):
  _, images, builder = vqa
  both = builder.as_data_source(split="train[:3]+validation", decoders={
      "image": tfds.decode.SkipDecoding()})
  assert len(both) == 3 + 20
  subsets = {int(r["image_id"]) >= 100 for r in both}
  assert subsets == {False, True}  # train2014 ids and val2014 ids (100 +)
  for record in both:
    image_id = int(record["image_id"])
    subset = "val2014" if image_id >= 100 else "train2014"
    assert record["image"] == images[(subset, image_id)]
  with pytest.raises(ValueError, match="Unknown split 'test'"):  # TFDS's own
    builder.as_data_source(split="test")
