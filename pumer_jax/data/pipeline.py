"""grain input pipelines over `tfds.data_source`: one function, `make_loader`.

Every example becomes fixed-shape numpy arrays (decode, resize to the static
image size, normalise, tokenize, pad to the static text length), then
batches. Training shuffles, repeats and drops the last partial batch.
Evaluation visits every example exactly once: each process's share is padded
to the same whole number of batches with rows marked `valid == False`, so
all hosts run the same number of steps and nothing is dropped or counted
twice.

Batches are dicts of numpy arrays (B = batch_size, L = text_length):
  input_ids, attention_mask, token_type_ids   int32 [B, L]
  pixel_values     float32 [B, H, W, 3] (nlvr2: [B, 2, H, W, 3])
  valid            bool [B]; False on evaluation padding rows
  example_id       int64 [B]; the element's index in the split (below); -1 on padding
and per task:
  vqa:   labels float32 [B, num_answers] (soft scores), question_id int64 [B]
  ve, nlvr2: label int32 [B]
  retrieval (one element per (image, caption) pair; example_id = caption_index),
  retrieval_captions (the same elements, text only) and retrieval_images (one
  element per image, no text; example_id = image_index):
         image_index int32 [B], caption_index int32 [B] (-1 for retrieval_images)
For retrieval, caption `k` belongs to image `k // CAPTIONS_PER_IMAGE`; the full
score matrix pairs every batch of `retrieval_captions` with every batch of
`retrieval_images` (both in evaluation mode).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import grain
import jax
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds
import tokenizers as hf_tokenizers

from pumer_jax.data import answers, shapes_patches
from pumer_jax.data.builder import skip_image_decoders
from pumer_jax.data.flickr30k import CAPTIONS_PER_IMAGE

Task = Literal["vqa", "ve", "nlvr2", "retrieval", "retrieval_images", "retrieval_captions"]
TASKS: tuple[str, ...] = Task.__args__

# (mean, std) per channel, applied to pixels scaled to [0, 1].
NORMALIZATION = {
    "vilt": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}
# The text each task reads; retrieval reads `captions[slot]`.
_TEXT_FIELD = {"vqa": "question", "ve": "hypothesis", "nlvr2": "sentence",
               "retrieval": "captions", "retrieval_captions": "captions"}
# Fields that name an example in error messages.
_ID_FIELDS = ("question_id", "pair_id", "identifier", "image_id")


def data_source(builder_or_source: Any, split: str) -> Sequence[Mapping[str, Any]]:
  """The random-access records of `split`, with images left as encoded bytes.

  Args:
    builder_or_source: a prepared TFDS builder (its images are then not
      decoded by TFDS; the pipeline decodes them), the split mapping returned by
      `tfds.data_source(...)`, or one split's data source (`split` unused).
  """
  if isinstance(builder_or_source, tfds.core.DatasetBuilder):
    skip = skip_image_decoders(builder_or_source)
    return builder_or_source.as_data_source(split=split, decoders=skip)
  if isinstance(builder_or_source, Mapping):
    return builder_or_source[split]
  return builder_or_source


def make_loader(
    builder_or_source: Any,
    split: str,
    *,
    batch_size: int,
    image_size: tuple[int, int],
    text_length: int,
    tokenizer: Any,
    task: Task,
    train: bool,
    seed: int = 0,
    normalize: Literal["vilt", "clip"] = "vilt",
    answer_vocab: Sequence[str] | None = None,
    num_epochs: int | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
    worker_count: int = 0,
    resize: Literal["squash", "crop"] = "squash",
    read_threads: int = 4,
    patch_grid: int = 0,
    grounding: bool = False,
) -> grain.IterDataset:
  """A grain dataset of batches (see the module docstring for their format).

  Args:
    builder_or_source: see `data_source`.
    split: the TFDS split, e.g. "train", "validation".
    batch_size: examples per batch on this process.
    image_size: static (H, W) of `pixel_values`.
    text_length: static token count L; longer text is truncated, keeping the
      final [SEP] (or </s>).
    tokenizer: a `transformers` tokenizer that adds [CLS]/[SEP] (or <s>/</s>);
      see `tokenizers.py` and `shapes_vqa.tokenizer()`.
    task: which fields to read and which labels to emit.
    train: shuffle (reshuffled every epoch), repeat `num_epochs` times (None:
      forever) and drop the last partial batch; else one pass with padding.
    seed: shuffle seed (training only).
    normalize: "vilt" ((x/255 - 0.5)/0.5) or "clip" (CLIP's mean and std).
    answer_vocab: for task "vqa", the answer of each label column.
    num_epochs: training epochs; must be None or 1 for evaluation.
    shard_index, shard_count: this process's shard of the data; default
      `jax.process_index()` and `jax.process_count()`.
    worker_count: grain worker processes (0: in-process threads only; workers
      need absl flags parsed and a `__main__` guard).
    resize: "squash" resizes to (H, W) ignoring aspect ratio (nothing is cut
      off, which matters for questions about left and right); "crop" resizes
      the shorter side and centre-crops (CLIP's preprocessing).
    read_threads: threads that read and preprocess examples.
    patch_grid: when > 0, each example also holds `patch_targets` int32
      [patch_grid**2], the class of the object each patch of that grid shows
      (`shapes_patches`; datasets with an `objects` feature: shapes_vqa).
    grounding: with `patch_grid`, also `grounding_targets` float32
      [patch_grid**2]: 1 on the patches of the objects the question names
      (shapes_vqa's `referents`).

  Returns:
    An iterable `grain.IterDataset`; its iterator's `get_state()` /
    `set_state()` checkpoint the position in the data.
  """
  if task not in TASKS:
    raise ValueError(f"task {task!r} is not one of {TASKS}.")
  if normalize not in NORMALIZATION:
    raise ValueError(f"normalize {normalize!r} is not one of {tuple(NORMALIZATION)}.")
  if resize not in ("squash", "crop"):
    raise ValueError(f"resize {resize!r} is not 'squash' or 'crop'.")
  if task == "vqa" and not answer_vocab:
    raise ValueError("task 'vqa' needs answer_vocab (e.g. shapes_vqa.ANSWERS, or "
                     "answers.load_or_build_answer_vocab(builder) for vqa_v2).")
  if text_length < 2:
    raise ValueError(f"text_length {text_length} leaves no room for [CLS] and [SEP].")
  if not train and num_epochs not in (None, 1):
    raise ValueError(f"evaluation makes exactly one pass; got num_epochs={num_epochs}.")
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index {shard_index} is not in [0, {shard_count}).")

  source = data_source(builder_or_source, split)
  per_record = CAPTIONS_PER_IMAGE if task in ("retrieval", "retrieval_captions") else 1
  num_elements = len(source) * per_record
  if train:
    table = training_shard(num_elements, shard_index, shard_count)
    if len(table) < batch_size:
      raise ValueError(f"split {split!r} gives shard {shard_index} {len(table)} examples, "
                       f"fewer than one batch of {batch_size}.")
    ds = grain.MapDataset.source(table).shuffle(seed=seed).repeat(num_epochs)
  else:
    table = evaluation_shard(num_elements, shard_index, shard_count, batch_size)
    ds = grain.MapDataset.source(table)
  ds = ds.map(ExampleReader(
      source=source, split=split, task=task, image_size=tuple(image_size),
      text_length=text_length, encoder=TextEncoder(tokenizer) if task in _TEXT_FIELD else None,
      normalize=normalize, resize=resize, per_record=per_record,
      answer_index=({a: i for i, a in enumerate(answer_vocab)} if task == "vqa" else None),
      patch_grid=patch_grid, grounding=grounding))
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                            prefetch_buffer_size=2 * batch_size))
  ds = ds.batch(batch_size, drop_remainder=train)
  if worker_count > 0:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return ds


# ----------------------------------------------------------------------------
# Which elements each process reads.
# ----------------------------------------------------------------------------


def training_shard(num_elements: int, shard_index: int, shard_count: int) -> np.ndarray:
  """int64 [n, 2] rows (element, valid=1): every `shard_count`-th element.

  Every shard gets the same count (the remainder is left out), so all hosts
  run the same number of steps per epoch.
  """
  per_shard = num_elements // shard_count
  elements = np.arange(per_shard * shard_count)[shard_index::shard_count]  # [per_shard]
  return np.stack([elements, np.ones_like(elements)], axis=1)


def evaluation_shard(num_elements: int, shard_index: int, shard_count: int,
                     batch_size: int) -> np.ndarray:
  """int64 [n, 2] rows (element, valid): this shard's elements, padded.

  Shards take every `shard_count`-th element, so together they cover each
  element exactly once; each is padded (with element 0, valid=0) to the
  number of whole batches that the largest shard needs.
  """
  if num_elements == 0:
    raise ValueError("cannot evaluate on an empty split.")
  mine = np.arange(num_elements)[shard_index::shard_count]
  rows = math.ceil(math.ceil(num_elements / shard_count) / batch_size) * batch_size
  elements = np.zeros((rows,), np.int64)
  elements[:len(mine)] = mine
  valid = (np.arange(rows) < len(mine)).astype(np.int64)
  return np.stack([elements, valid], axis=1)  # [rows, 2]


# ----------------------------------------------------------------------------
# Per-example preprocessing.
# ----------------------------------------------------------------------------


class TextEncoder:
  """Token ids of one text, padded or truncated to a static length.

  Uses a private copy of a fast tokenizer's Rust backend with truncation and
  padding switched off, so reader threads only ever read it (a shared
  `transformers` tokenizer mutates its backend per call and can fail with
  "Already borrowed" under threads).
  """

  def __init__(self, tokenizer: Any):
    if tokenizer.pad_token_id is None:
      raise ValueError("the tokenizer has no pad token.")
    self.pad_id = int(tokenizer.pad_token_id)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    self._backend = None
    self._tokenizer = tokenizer
    if backend is not None:
      self._backend = hf_tokenizers.Tokenizer.from_str(backend.to_str())
      self._backend.no_truncation()
      self._backend.no_padding()

  def ids(self, text: str) -> list[int]:
    """All token ids, special tokens included."""
    if self._backend is not None:
      return self._backend.encode(text).ids
    return list(self._tokenizer(text)["input_ids"])

  def __call__(self, text: str, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), int32 [length] each; truncation keeps the last token."""
    ids = self.ids(text)
    if len(ids) > length:
      ids = ids[:length - 1] + ids[-1:]
    input_ids = np.full((length,), self.pad_id, np.int32)
    input_ids[:len(ids)] = ids
    mask = np.zeros((length,), np.int32)
    mask[:len(ids)] = 1
    return input_ids, mask


def load_image(value: bytes | np.ndarray, size: tuple[int, int], resize: str) -> np.ndarray:
  """Decodes (any mode: grey, CMYK, RGBA become RGB) and resizes: uint8 [H, W, 3]."""
  if isinstance(value, (bytes, np.bytes_)):
    image = Image.open(io.BytesIO(value))
  else:
    image = Image.fromarray(np.asarray(value, np.uint8).squeeze())
  image = image.convert("RGB")
  height, width = size
  if resize == "crop":
    scale = max(height / image.height, width / image.width)
    scaled = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    if scaled != image.size:
      image = image.resize(scaled, Image.BICUBIC)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    image = image.crop((left, top, left + width, top + height))
  elif image.size != (width, height):
    image = image.resize((width, height), Image.BICUBIC)
  return np.asarray(image, np.uint8)


def normalize_pixels(image: np.ndarray, normalize: str) -> np.ndarray:
  """uint8 [..., 3] -> float32 [..., 3]: (x / 255 - mean) / std."""
  mean, std = NORMALIZATION[normalize]
  return ((image.astype(np.float32) / 255.0 - np.float32(mean)) / np.float32(std)).astype(
      np.float32)


def record_file(source: Any, record: int) -> str | None:
  """The array_record file that holds `record` of a TFDS data source, and
  the record's index inside it; None for sources that know no files."""
  try:
    instructions = source.dataset_info.splits[source.split].file_instructions
  except (AttributeError, KeyError, TypeError):
    return None
  start = 0
  for instruction in instructions:
    count = (instruction.take if instruction.take >= 0
             else instruction.examples_in_shard - instruction.skip)
    if record < start + count:
      return (f"{instruction.filename} "
              f"(record {instruction.skip + record - start} of that file)")
    start += count
  return None


def _text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


class ExampleReader:
  """Maps a row (element, valid) of the shard table to one example's arrays."""

  def __init__(self, *, source, split: str, task: str, image_size: tuple[int, int],
               text_length: int, encoder: TextEncoder | None, normalize: str, resize: str,
               per_record: int, answer_index: Mapping[str, int] | None,
               patch_grid: int = 0, grounding: bool = False):
    self.source = source
    self.split = split
    self.task = task
    self.image_size = image_size
    self.text_length = text_length
    self.encoder = encoder
    self.normalize = normalize
    self.resize = resize
    self.per_record = per_record
    self.answer_index = answer_index
    self.patch_grid = patch_grid
    self.grounding = grounding

  def _image(self, value, record: int, example: Mapping[str, Any]) -> np.ndarray:
    try:
      image = load_image(value, self.image_size, self.resize)
    except (OSError, SyntaxError, ValueError) as e:  # PIL's undecodable-image errors
      raise ValueError(
          f"{self._name(record, example)}: its image does not decode "
          f"({type(e).__name__}: {e}); the record is damaged or its image is not "
          "PNG/JPEG: prepare the dataset again from the official files.") from e
    return normalize_pixels(image, self.normalize)

  def _patch_targets(self, example: Mapping[str, Any], record: int
                     ) -> dict[str, np.ndarray]:
    if "objects" not in example:
      raise ValueError(
          f"{self._name(record, example)} has no `objects` feature: patch "
          "targets (loss.patch_weight > 0) need object annotations, which "
          "only shapes_vqa has; set loss.patch_weight=0.")
    image = example["image"]  # the objects are in its pixels, before resizing
    size = (Image.open(io.BytesIO(image)).size[1]
            if isinstance(image, (bytes, np.bytes_)) else int(np.shape(image)[0]))
    objects = shapes_patches.stored_objects(example["objects"])
    out = {"patch_targets": shapes_patches.patch_targets(objects, size, self.patch_grid)}
    if self.grounding:  # the patches of the objects the question names
      out["grounding_targets"] = shapes_patches.grounding_targets(
          objects, example["referents"], size, self.patch_grid)
    return out

  def _name(self, record: int, example: Mapping[str, Any] | None = None) -> str:
    ids = [f"{k}={_text(example[k])}" for k in _ID_FIELDS if k in (example or {})]
    where = record_file(self.source, record)
    return (f"split {self.split!r} record {record}" + (f" ({ids[0]})" if ids else "")
            + (f" in {where}" if where else ""))

  def __call__(self, row: np.ndarray) -> dict[str, np.ndarray]:
    element, valid = int(row[0]), bool(row[1])
    record, slot = divmod(element, self.per_record)
    try:
      example = self.source[record]
    except Exception as e:  # array_record raises RuntimeError for damage
      raise RuntimeError(
          f"could not read {self._name(record)}: {type(e).__name__}: "
          f"{str(e)[:300]}. The file is truncated or corrupt: prepare the "
          "dataset again (delete its directory under data_dir) or copy the "
          "file again.") from e
    image = lambda key: self._image(example[key], record, example)
    out: dict[str, np.ndarray] = {
        "valid": np.bool_(valid),
        "example_id": np.int64(element if valid else -1),
    }
    if self.encoder is not None:
      text = example[_TEXT_FIELD[self.task]]
      text = _text(text[slot] if self.task.startswith("retrieval") else text)
      if not text.strip():
        raise ValueError(f"{self._name(record, example)}: empty "
                         f"{_TEXT_FIELD[self.task]!r} text.")
      out["input_ids"], out["attention_mask"] = self.encoder(text, self.text_length)
      out["token_type_ids"] = np.zeros((self.text_length,), np.int32)
    if self.task == "nlvr2":
      out["pixel_values"] = np.stack(
          [image("image0"), image("image1")])  # [2, H, W, 3]
    elif self.task != "retrieval_captions":
      out["pixel_values"] = image("image")  # [H, W, 3]
    if self.task == "vqa":
      out["labels"] = answers.soft_scores([_text(a) for a in example["answers"]],
                                          self.answer_index)  # [num_answers]
      out["question_id"] = np.int64(example["question_id"])
    elif self.task in ("ve", "nlvr2"):
      out["label"] = np.int32(example["label"])
    else:
      out["image_index"] = np.int32(record)
      out["caption_index"] = np.int32(element if self.per_record > 1 else -1)
    if self.patch_grid:
      out.update(self._patch_targets(example, record))
    return out
