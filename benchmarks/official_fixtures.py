"""Official-format files of VQA v2, SNLI-VE and NLVR2 at their real
per-item sizes and counts, for `data_scale.py`: COCO-like 640x480 JPEGs of
about COCO's mean size with 5.34 questions per image and 10 answers each;
500x375 Flickr30k-like JPEGs with 17.8 hypotheses each; 500x375 PNG pairs
with 1.68 sentences per pair. The images are a few distinct synthetic
photographs (smooth colour fields with sensor-like noise) under every id:
real sizes and decode costs, not real content.
"""

from __future__ import annotations

import io
import json
import pathlib

import numpy as np
from PIL import Image

from pumer_jax.data import snli_ve

# The official releases (visualqa.org, cocodataset.org, SNLI-VE's README).
VQA_FULL = dict(images=82_783 + 40_504, questions=443_757 + 214_354,
                image_bytes=13.5e9 + 6.6e9)  # train2014 + val2014
SNLI_VE_FULL = dict(images=31_783, questions=529_527 + 17_858 + 17_901)
# NLVR2 (Suhr et al., ACL 2019): 107,292 examples over 127,502 images,
# two per example: each image serves 1.68 examples.
NLVR2_FULL = dict(images=127_502, questions=107_292)
QUESTIONS_PER_IMAGE = {"vqa_v2": VQA_FULL["questions"] / VQA_FULL["images"],
                       "snli_ve": SNLI_VE_FULL["questions"] / SNLI_VE_FULL["images"],
                       "nlvr2": NLVR2_FULL["questions"] / NLVR2_FULL["images"]}
FULL = {"vqa_v2": VQA_FULL, "snli_ve": SNLI_VE_FULL, "nlvr2": NLVR2_FULL}
WORDS = ("what", "color", "is", "the", "bus", "how", "many", "people", "are",
         "there", "a", "man", "riding", "horse", "?", "dog", "on", "left")


def photo(rng: np.random.Generator, size: tuple[int, int], noise: float) -> bytes:
  """A JPEG of a smooth random colour field plus noise (size = (W, H))."""
  base = Image.fromarray(rng.integers(0, 256, (12, 16, 3)).astype(np.uint8))
  pixels = np.asarray(base.resize(size, Image.BICUBIC), np.float32)
  pixels += rng.normal(0, noise, pixels.shape)
  buffer = io.BytesIO()
  Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
      buffer, format="JPEG", quality=90)
  return buffer.getvalue()


def _counts(num_images: int, per_image: float) -> list[int]:
  """Questions per image, averaging `per_image` (e.g. 5, 5, 6, 5, 6, ...)."""
  totals = np.floor(np.arange(1, num_images + 1) * per_image).astype(int)
  return list(np.diff(totals, prepend=0))


def write_vqa(root: pathlib.Path, num_images: int, subset: str = "train2014",
              seed: int = 0) -> int:
  """Official VQA v2 files of one COCO subset; returns the images' bytes."""
  rng = np.random.default_rng(seed)
  pool = [photo(rng, (640, 480), 17.0) for _ in range(64)]
  folder = root / subset
  folder.mkdir(parents=True)
  questions, annotations, total = [], [], 0
  for i, count in enumerate(_counts(num_images, QUESTIONS_PER_IMAGE["vqa_v2"])):
    image_id = 1000 + i
    data = pool[i % len(pool)]
    (folder / f"COCO_{subset}_{image_id:012d}.jpg").write_bytes(data)
    total += len(data)
    for k in range(count):
      qid = image_id * 100 + k
      text = " ".join(rng.choice(WORDS, 6)) + " ?"
      questions.append({"image_id": image_id, "question": text, "question_id": qid})
      annotations.append({
          "question_id": qid, "image_id": image_id, "answer_type": "other",
          "multiple_choice_answer": "yes", "question_type": "what",
          "answers": [{"answer": str(rng.choice(["yes", "no", "2", "red"])),
                       "answer_confidence": "yes", "answer_id": j + 1}
                      for j in range(10)]})
  (root / f"v2_OpenEnded_mscoco_{subset}_questions.json").write_text(
      json.dumps({"questions": questions, "data_subtype": subset}))
  (root / f"v2_mscoco_{subset}_annotations.json").write_text(
      json.dumps({"annotations": annotations, "data_subtype": subset}))
  return total


def write_vqa_splits(root: pathlib.Path, num_images: int) -> int:
  """train2014, and val2014 a tenth as large (the default config reads both)."""
  return (write_vqa(root, num_images) +
          write_vqa(root, max(num_images // 10, 1), "val2014", seed=5))


def write_snli_ve(root: pathlib.Path, num_images: int, seed: int = 1) -> int:
  """Official SNLI-VE files over Flickr30k-like images; the images' bytes."""
  rng = np.random.default_rng(seed)
  pool = [photo(rng, (500, 375), 17.0) for _ in range(64)]
  folder = root / "flickr30k_images"
  folder.mkdir(parents=True)
  total, lines = 0, {"train": [], "dev": [], "test": []}
  for i, count in enumerate(_counts(num_images, QUESTIONS_PER_IMAGE["snli_ve"])):
    data = pool[i % len(pool)]
    (folder / f"{10_000 + i}.jpg").write_bytes(data)
    total += len(data)
    split = {1: "dev", 2: "test"}.get(i % 10, "train")  # 80/10/10
    for k in range(count):
      lines[split].append(json.dumps({
          "Flickr30K_ID": str(10_000 + i), "pairID": f"{10_000 + i}.jpg#{k}",
          "sentence1": "A man rides a horse.", "sentence2": "Someone rides.",
          "gold_label": snli_ve.LABELS[k % 3]}))
  for split, rows in lines.items():
    (root / f"snli_ve_{split}.jsonl").write_text("\n".join(rows) + "\n")
  return total


def write_nlvr2(root: pathlib.Path, num_images: int, seed: int = 2) -> int:
  """Official NLVR2 files: image pairs as PNG (500x375 photographs), each
  pair with 1.68 sentences on average (each example reads two images, each
  image serves 1.68 examples)."""
  rng = np.random.default_rng(seed)
  pool = []
  for _ in range(16):
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo(rng, (500, 375), 17.0))).save(buffer, format="PNG")
    pool.append(buffer.getvalue())
  total, lines = 0, {"train": [], "dev": [], "test1": []}
  pairs = max(num_images // 2, 1)
  sentences = _counts(pairs, 2 * QUESTIONS_PER_IMAGE["nlvr2"])
  for i, count in enumerate(sentences):
    split = {1: "dev", 2: "test1"}.get(i % 10, "train")  # 80/10/10
    folder = root / split / (str(i % 100) if split == "train" else "")
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"{split}-{i}-0"
    for side in (0, 1):
      data = pool[(2 * i + side) % len(pool)]
      (folder / f"{prefix}-img{side}.png").write_bytes(data)
      total += len(data)
    for k in range(count):
      row = {"identifier": f"{prefix}-{k}", "sentence": "The left image has two dogs.",
             "label": ["True", "False"][k % 2]}
      if split == "train":
        row["directory"] = i % 100
      lines[split].append(json.dumps(row))
  for split, rows in lines.items():
    (root / f"{split}.json").write_text("\n".join(rows) + "\n")
  return total
