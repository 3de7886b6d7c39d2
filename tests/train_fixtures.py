"""A tiny config and in-memory batches for train/eval tests."""

import importlib.util
import itertools
import pathlib

import flax
import jax
import numpy as np

from pumer_jax.configs.base import base_config, reduce_config
from pumer_jax.train import finetune


# The tiny ViLT the training tests (and the per-patch heads' tests) build.
TINY_VILT = dict(
    vocab_size=30, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
    intermediate_size=64, max_position_embeddings=8, image_size=32,
    patch_size=8, num_labels=5, input_size=(32, 32))


def tiny_config(**overrides):
  c = base_config()
  c.unlock()
  c.model.update(TINY_VILT)
  c.data.text_len = 8
  c.batch_size = 8
  c.total_steps = 6
  c.log_every = 1
  c.checkpoint_every = 3
  c.progress = False
  c.optim.warmup_steps = 1
  c.optim.lr = 3e-3
  c.reducers.pumer = reduce_config(
      method="pumer", layers=(1,), prune_ratio=0.2, image_merge_ratio=0.2,
      text_merge_ratio=0.2)
  c.reducers.tome = reduce_config(method="tome", tome_r=3)
  c.eval.timing_min_seconds = 0.0
  return with_overrides(c, overrides)


def with_overrides(c, overrides):
  """Sets dotted keys (`"prune.target": 0.5`) on an unlocked config; locks."""
  for key, value in overrides.items():
    node = c
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
  c.lock()
  return c


def random_batch(seed, batch=8, text_len=8, hw=32, num_labels=5):
  rng = np.random.default_rng(seed)
  mask = np.ones((batch, text_len), np.int32)
  mask[::2, 5:] = 0
  labels = np.zeros((batch, num_labels), np.float32)
  labels[np.arange(batch), rng.integers(0, num_labels, batch)] = 1.0
  return dict(
      input_ids=rng.integers(1, 30, (batch, text_len)).astype(np.int32),
      attention_mask=mask,
      pixel_values=rng.normal(size=(batch, hw, hw, 3)).astype(np.float32),
      labels=labels,
      valid=np.ones((batch,), bool),
  )


class CountingIterator:
  """Deterministic batches with a checkpointable position, like grain's."""

  def __init__(self, seed=0):
    self.seed, self.position = seed, 0

  def __iter__(self):
    return self

  def __next__(self):
    batch = random_batch(self.seed * 10_000 + self.position)
    self.position += 1
    return batch

  def get_state(self):
    return {"position": self.position}

  def set_state(self, state):
    self.position = state["position"]


def fixed_batches(seed=0):
  return itertools.repeat(random_batch(seed))


def init_model(config):
  """(model, unboxed params) for a config, initialised under jit."""
  model, _, example = finetune.build_model(config)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), **example)
  return model, flax.linen.meta.unbox(variables)["params"]


def save_tiny_model(directory):
  """A tiny_config() model saved in `directory`: (directory, model, params)."""
  from pumer_jax.models import saved
  model, params = init_model(tiny_config())
  saved.save_model(directory, model.config, params, overwrite=True)
  return directory, model, params


def shapes_config(data_dir, steps):
  """configs/vilt_shapes.py:runlocal for `steps` steps at a constant
  learning rate, reading (or generating) its data under `data_dir`."""
  path = pathlib.Path(__file__).parent.parent / "configs" / "vilt_shapes.py"
  spec = importlib.util.spec_from_file_location("vilt_shapes", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config("runlocal")
  c.data.data_dir = str(data_dir)
  c.total_steps, c.checkpoint_every, c.log_every = steps, 2, 1
  c.progress, c.debug_checks = False, False
  assert c.optim.lr == 0.001
  c.optim.end_lr = c.optim.lr
  return c


# The scenes `scene_batch` draws: 32x32 images, up to 3 objects spanning patches.
SCENES = dict(image_size=32, max_objects=3, object_scale=1.5)


def scene_batch(tmp_path, **loader_options):
  """The first train batch (8 examples, a 4x4 patch grid) of a tiny
  shapes_vqa prepared under `tmp_path` with SCENES."""
  from pumer_jax.data import pipeline, shapes_vqa
  config = shapes_vqa.ShapesVqaConfig(
      name="scene_batch", num_train=8, num_validation=2, num_test=1, **SCENES)
  builder = shapes_vqa.ShapesVqa(config=config, data_dir=str(tmp_path))
  builder.download_and_prepare()
  loader = pipeline.make_loader(
      builder, "train", batch_size=8, image_size=(32, 32), text_length=16,
      tokenizer=shapes_vqa.tokenizer(), task="vqa", train=True, seed=0,
      answer_vocab=shapes_vqa.ANSWERS, num_epochs=1, shard_index=0,
      shard_count=1, patch_grid=4, **loader_options)
  return builder, next(iter(loader))
