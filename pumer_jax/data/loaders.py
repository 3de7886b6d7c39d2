"""From a run config to prepared TFDS builders and grain loaders.

The builders and the grain pipeline are this package's other modules; this
file only reads the config: which dataset, where its files are, which
tokenizer and answer vocabulary, and each process's share of the global
batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from pumer_jax.data import answers, tokenizers
from pumer_jax.data import flickr30k, nlvr2, pipeline, shapes_vqa, snli_ve
from pumer_jax.data import vqa_v2



@dataclasses.dataclass(frozen=True)
class RetrievalBatches:
  """Fresh passes over a retrieval split: matched pairs (ITM accuracy,
  timing), captions and images (crossed for the full score matrix)."""

  pairs: Callable[[], Iterable[dict[str, np.ndarray]]]
  captions: Callable[[], Iterable[dict[str, np.ndarray]]]
  images: Callable[[], Iterable[dict[str, np.ndarray]]]


# dataset name -> (builder class, its BuilderConfig class or None, task)
DATASETS = {
    "shapes_vqa": (shapes_vqa.ShapesVqa, shapes_vqa.ShapesVqaConfig, "vqa"),
    "vqa_v2": (vqa_v2.VqaV2, None, "vqa"),
    "snli_ve": (snli_ve.SnliVe, None, "ve"),
    "nlvr2": (nlvr2.Nlvr2, None, "nlvr2"),
    "flickr30k": (flickr30k.Flickr30k, None, "retrieval"),
}


def prepared_builder(config: ml_collections.ConfigDict):
  """The dataset's builder, prepared (generated or read from manual_dir)."""
  data = config.data
  if data.name not in DATASETS:
    raise ValueError(f"data.name={data.name!r} must be one of "
                     f"{sorted(DATASETS)}.")
  builder_cls, config_cls, task = DATASETS[data.name]
  if task != config.task:
    raise ValueError(f"data.name={data.name!r} is a {task!r} dataset but "
                     f"task={config.task!r}.")
  kwargs = {}
  overrides = dict(data.get("builder_config", {}) or {})
  if overrides:
    if config_cls is None:
      raise ValueError(f"{data.name} takes no data.builder_config.")
    name = "_".join(f"{k}{v}" for k, v in sorted(overrides.items()))
    kwargs["config"] = builder_cls.custom_config(config_cls, name, **overrides)
  builder = builder_cls(data_dir=data.data_dir or None, **kwargs)
  if hasattr(builder, "read_processes"):
    builder.read_processes = int(data.get("prepare_processes", 0))
  prepare = lambda: builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          manual_dir=data.manual_dir or None))
  if jax.process_count() == 1:
    prepare()
    return builder
  # Several processes: process 0 prepares first, the others wait, then find
  # it done on a shared data_dir (or prepare their own copy on a local one).
  if jax.process_index() == 0:
    prepare()
  multihost_utils.sync_global_devices(f"prepared {data.name}")
  if jax.process_index() != 0:
    prepare()
  return builder


def tokenizer_for(config: ml_collections.ConfigDict):
  """ViLT's BERT WordPiece or METER's RoBERTa BPE, from data.tokenizer.

  Refuses, at start-up, a tokenizer with more tokens than the model's
  embedding table (`model.vocab_size`): its larger ids would index past it.
  """
  tokenizer = _named_tokenizer(config)
  if len(tokenizer) > config.model.vocab_size:
    raise ValueError(
        f"the tokenizer ({config.data.tokenizer or config.data.name}) has "
        f"{len(tokenizer)} tokens but the model's embedding table holds "
        f"model.vocab_size={config.model.vocab_size}; use the model's own "
        "tokenizer, or set --config.model.vocab_size to at least "
        f"{len(tokenizer)} when training from scratch.")
  return tokenizer


def _named_tokenizer(config: ml_collections.ConfigDict):
  meter = config.arch == "meter"
  if config.data.tokenizer:
    if meter:
      return tokenizers.roberta_tokenizer(config.data.tokenizer)
    return tokenizers.bert_tokenizer(config.data.tokenizer)
  if config.data.name == "shapes_vqa":
    return shapes_vqa.tokenizer()
  want = ("a RoBERTa tokenizer directory (METER uses roberta-base)" if meter
          else "a BERT vocab.txt or tokenizer directory (ViLT uses "
          "bert-base-uncased)")
  raise ValueError(
      f"data.tokenizer is empty; set it to {want} for {config.data.name}.")


def answer_vocab_for(config: ml_collections.ConfigDict, builder) -> Any:
  if config.task != "vqa":
    return None
  if config.data.name == "shapes_vqa":
    vocab = list(shapes_vqa.ANSWERS)
  else:
    vocab = answers.load_or_build_answer_vocab(builder)
  if len(vocab) != config.model.num_labels:
    raise ValueError(
        f"the answer vocabulary has {len(vocab)} answers but "
        f"model.num_labels={config.model.num_labels}; set "
        f"--config.model.num_labels={len(vocab)}.")
  return vocab


def _loader(config, builder, split: str, train: bool, batch_size: int,
            task: str | None = None, shard: tuple[int, int] | None = None,
            patch_targets: bool = False):
  index, count = shard or (jax.process_index(), jax.process_count())
  if batch_size % count:
    raise ValueError(f"batch size {batch_size} must divide over "
                     f"{count} processes.")
  return pipeline.make_loader(
      builder, split,
      batch_size=batch_size // count, shard_index=index, shard_count=count,
      image_size=tuple(config.model.input_size),
      text_length=config.data.text_len,
      tokenizer=tokenizer_for(config),
      task=task or config.task, train=train, seed=config.seed,
      normalize=config.data.normalize,
      answer_vocab=answer_vocab_for(config, builder),
      worker_count=config.data.worker_count,
      patch_grid=_patch_grid(config) if train or patch_targets else 0,
      grounding=bool(config.loss.get("grounding_weight", 0.0)),
  )


def _patch_grid(config: ml_collections.ConfigDict) -> int:
  """The patch grid whose per-patch targets the loss trains on (0: none)."""
  if not (config.loss.get("patch_weight", 0.0)
          or config.loss.get("grounding_weight", 0.0)):
    return 0
  height, width = tuple(config.model.input_size)
  grid = height // config.model.patch_size
  if height != width or height % config.model.patch_size:
    raise ValueError(f"patch targets need a square image tiled by its "
                     f"patches; got input_size={(height, width)}, "
                     f"patch_size={config.model.patch_size}.")
  return grid


def train_iterator(config: ml_collections.ConfigDict,
                   shard: tuple[int, int] | None = None):
  """An endless, checkpointable iterator over this process's train batches.

  `shard=(index, count)` reads another process's share instead (tests
  rebuild a multi-process run's global batches in one process).
  """
  builder = prepared_builder(config)
  return iter(_loader(config, builder, config.data.train_split, True,
                      config.batch_size, shard=shard))


def eval_batches(config: ml_collections.ConfigDict, split: str, *,
                 patch_targets: bool = False):
  """A function returning a fresh single pass over `split` (padded batches).

  For retrieval, a `RetrievalBatches` of three such functions.
  `patch_targets`: the batches also hold the per-patch classes the loss's
  patch head trains on (`loss.patch_weight` > 0; shapes_vqa).
  """
  builder = prepared_builder(config)
  size = config.eval.batch_size

  def passes(task=None, batch_size=size):
    dataset = _loader(config, builder, split, False, batch_size, task,
                      patch_targets=patch_targets)
    return lambda: iter(dataset)

  if config.task != "retrieval":
    return passes()
  return RetrievalBatches(
      pairs=passes(), captions=passes("retrieval_captions"),
      images=passes("retrieval_images", config.eval.retrieval_image_batch))
