"""Every bad input a user can hand the project gets a clear error.

One table: what was wrong, the error type, and a fragment of the message
that names the problem (and usually the fix). Shapes, values, dtypes,
reducer settings, saved models, weight files, configs and data.
"""

import io
import json
import shutil

import flax
import jax
import numpy as np
from PIL import Image
import pytest
import torch

from pumer_jax.configs.base import base_config
from pumer_jax.convert import fit_to_model, load_state_dict
from pumer_jax.data import loaders, pipeline, shapes_vqa, vqa_v2
from pumer_jax.models import MeterConfig, ReduceConfig, Vilt, ViltConfig, saved
from pumer_jax.models.vilt import example_inputs
from pumer_jax.reduce import Geometry, bipartite_merge, topk_keep
from pumer_jax.train.finetune import task_term
from train_fixtures import tiny_config

CONFIG = ViltConfig(vocab_size=30, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=64,
                    image_size=32, patch_size=16, max_position_embeddings=8,
                    num_labels=5, input_size=(32, 32))
MODEL = Vilt(CONFIG)


class NotATensor:
  """What a pickle may hold beyond tensors: unpickling it runs our code."""


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
  root = tmp_path_factory.mktemp("bad_inputs")
  params = flax.linen.meta.unbox(jax.jit(MODEL.init)(
      jax.random.PRNGKey(0), **example_inputs(CONFIG, 3, 6)))
  saved.save_model(root / "model", CONFIG, params["params"])
  for name, edit in (("corrupt", lambda text: "{not json"),
                     ("alien", lambda text: json.dumps(
                         {**json.loads(text), "model": "clip"}))):
    shutil.copytree(root / "model", root / name)
    path = root / name / saved.CONFIG_FILE
    path.write_text(edit(path.read_text()))
  (root / "pickled").mkdir()
  torch.save({"weight": torch.zeros(2), "extra": NotATensor()},
             root / "pickled" / "pytorch_model.bin")
  return dict(root=root, params=params)


def good_inputs():
  return dict(input_ids=np.ones((3, 6), np.int32),
              attention_mask=np.ones((3, 6), np.int32),
              pixel_values=np.zeros((3, 32, 32, 3), np.float32))


def apply(ctx, model=MODEL, **change):
  """The model on good inputs with `change` applied."""
  inputs = good_inputs()
  for key, value in change.items():
    inputs[key] = value(inputs[key]) if callable(value) else value
  return model.apply(ctx["params"], **inputs)


def set_at(index, value):
  def edit(a):
    a = np.array(a)
    a[index] = value
    return a
  return edit


def png() -> bytes:
  buffer = io.BytesIO()
  Image.new("RGB", (8, 8), (255, 0, 0)).save(buffer, format="PNG")
  return buffer.getvalue()


def read_all(records):
  loader = pipeline.make_loader(
      {"validation": records}, "validation", batch_size=1, image_size=(8, 8),
      text_length=6, tokenizer=shapes_vqa.tokenizer(), task="vqa",
      train=False, answer_vocab=["red", "blue"], shard_index=0, shard_count=1)
  return list(loader)


def vqa_record(**change):
  return {"question_id": 1, "image_id": 1, "image": png(),
          "question": "what color is the circle?", "answers": ["red"] * 10,
          **change}


def mapped_params(ctx, change_shape=False):
  flat = flax.traverse_util.flatten_dict(ctx["params"]["params"])
  mapped = {"/".join(k): np.asarray(v) for k, v in flat.items()}
  if change_shape:
    key = "classifier/out/kernel"
    mapped[key] = np.zeros(mapped[key].shape[:1] + (7,), np.float32)
  return mapped


CASES = {
    # Shapes and dtypes at the model's input.
    "pixels not NHWC": (lambda c: apply(c, pixel_values=np.zeros((32, 32, 3))),
                        ValueError, "NHWC"),
    "pixels with 4 channels": (
        lambda c: apply(c, pixel_values=np.zeros((3, 32, 32, 4))),
        ValueError, "channels"),
    "pixels off input_size": (
        lambda c: apply(c, pixel_values=np.zeros((3, 48, 48, 3))),
        ValueError, "input_size"),
    "image not a multiple of the patch": (
        lambda c: apply(c, Vilt(CONFIG.replace(input_size=None)),
                        pixel_values=np.zeros((3, 40, 32, 3))),
        ValueError, "multiple of patch_size"),
    "pixel batch != text batch": (
        lambda c: apply(c, pixel_values=np.zeros((2, 32, 32, 3))),
        ValueError, "!= text batch"),
    "text longer than the position table": (
        lambda c: apply(c, input_ids=np.ones((3, 9), np.int32),
                        attention_mask=np.ones((3, 9), np.int32)),
        ValueError, "at most 8 tokens"),
    "empty text": (
        lambda c: apply(c, input_ids=np.ones((3, 0), np.int32),
                        attention_mask=np.ones((3, 0), np.int32)),
        ValueError, "no tokens"),
    "attention_mask of another shape": (
        lambda c: apply(c, attention_mask=np.ones((3, 5), np.int32)),
        ValueError, "attention_mask has shape"),
    "float token ids": (
        lambda c: apply(c, input_ids=np.ones((3, 6), np.float32)),
        ValueError, "must be integers"),
    # Values.
    "token id past the vocabulary": (
        lambda c: apply(c, input_ids=set_at((1, 2), 30)),
        ValueError, r"example 1: input_ids\[1, 2\] = 30 is outside"),
    "negative token id": (
        lambda c: apply(c, input_ids=set_at((2, 4), -3)),
        ValueError, r"example 2: input_ids\[2, 4\] = -3"),
    "NaN pixel": (lambda c: apply(c, pixel_values=set_at((1, 5, 5, 0), np.nan)),
                  ValueError, "example 1: .* = nan is not finite"),
    "infinite pixel": (
        lambda c: apply(c, pixel_values=set_at((0, 0, 0, 2), np.inf)),
        ValueError, "inf is not finite"),
    "[CLS] masked out": (lambda c: apply(c, attention_mask=set_at((2, 0), 0)),
                         ValueError, "example 2: .* masks the first text"),
    "all-zero attention mask": (
        lambda c: apply(c, attention_mask=np.zeros((3, 6), np.int32)),
        ValueError, "example 0: .* masks the first text"),
    # Reducer settings and the pure functions.
    "ratio outside [0, 1)": (
        lambda c: ReduceConfig(method="pumer", layers=(1,), prune_ratio=1.0),
        ValueError, r"prune_ratio=1.0 must be in \[0, 1\)"),
    "reduction layer past the depth": (
        lambda c: apply(c, Vilt(CONFIG.replace(reduce=ReduceConfig(
            method="pumer", layers=(2,), prune_ratio=0.1)))),
        ValueError, "layers"),
    "unknown reducer": (lambda c: ReduceConfig(method="pumr"), ValueError,
                        "is not a method"),
    "unknown PuMer semantics": (
        lambda c: ReduceConfig(method="pumer", semantics="paper"),
        ValueError, "'official' runs PuMer's reference code"),
    "unknown score heads": (
        lambda c: ReduceConfig(method="pumer", score_heads="max"),
        ValueError, r"score_heads='max' must be one of \('mean', 'first'\)"),
    "unknown METER fusion order": (
        lambda c: MeterConfig(fusion_order="image_first"),
        ValueError, "fusion_order='image_first' must be one of"),
    "unknown VQA loss reduction": (
        lambda c: task_term("vqa", "max"),
        ValueError, "loss.vqa_reduction='max' must be one of"),
    "DynamicViT keeping no patch": (
        lambda c: ReduceConfig(method="dynamicvit", layers=(1,),
                               keep_ratios=(0.2,)).schedule(
                                   Geometry("vilt", 2, 5, 6)),
        ValueError, "keeps int.* = 0 image patches"),
    "misspelt reducer key": (
        lambda c: ReduceConfig.from_mapping({"prune_ration": 0.1}),
        ValueError, "unknown keys"),
    "merging more than matching can": (
        lambda c: bipartite_merge(np.zeros((1, 5, 2)), np.ones((1, 5, 2)),
                                  np.ones((1, 5)), 3),
        ValueError, r"r=3 must be a Python int in \[0, 2\]"),
    "keeping no token": (
        lambda c: topk_keep(np.zeros((1, 5, 2)), np.ones((1, 5)),
                            np.ones((1, 5)), 0),
        ValueError, r"keep=0 must be a Python int in \[1, 5\]"),
    # Saved models and weight files.
    "no model checkpoint": (lambda c: saved.load_model(c["root"] / "nowhere"),
                            FileNotFoundError, "is not a model checkpoint"),
    "corrupt model_config.json": (
        lambda c: saved.load_model(c["root"] / "corrupt"),
        ValueError, "model_config.json is corrupt"),
    "checkpoint of an unknown architecture": (
        lambda c: saved.load_model(c["root"] / "alien"),
        ValueError, "names model 'clip'"),
    "overwriting a saved model": (
        lambda c: saved.save_model(c["root"] / "model", CONFIG,
                                   c["params"]["params"]),
        FileExistsError, "is not empty"),
    "weights of the wrong shape": (
        lambda c: fit_to_model(mapped_params(c, change_shape=True), MODEL,
                               example_inputs(CONFIG)),
        ValueError, r"classifier/out/kernel: checkpoint \(\d+, 7\) vs model"),
    "a pickle that needs more than weights": (
        lambda c: load_state_dict(c["root"] / "pickled"),
        ValueError, "refused to load .*could run arbitrary code"),
    # Configs and data.
    "unknown config key": (lambda c: setattr(base_config().optim, "lrr", 1),
                           AttributeError, "lrr"),
    "unknown architecture": (lambda c: base_config("clip"), ValueError,
                             "must be one of"),
    "EfficientVLM target of 1": (
        lambda c: __import__("pumer_jax.compress.distill",
                             fromlist=["x"]).stage_model(tiny_config(
                                 stage="prune", init_from="x",
                                 **{"prune.target": 1.0})),
        ValueError, r"must be in \[0, 1\)"),
    "tokenizer larger than the embedding table": (
        lambda c: loaders.tokenizer_for(tiny_config(
            **{"data.name": "shapes_vqa", "model.vocab_size": 10})),
        ValueError, "embedding table holds model.vocab_size=10"),
    "answer vocabulary != num_labels": (
        lambda c: loaders.answer_vocab_for(tiny_config(
            **{"data.name": "shapes_vqa"}), None),
        ValueError, "model.num_labels=5"),
    "missing manual_dir": (
        lambda c: vqa_v2.VqaV2(data_dir=str(c["root"] / "tfds")).
        download_and_prepare(download_config=__import__(
            "tensorflow_datasets").download.DownloadConfig(
                manual_dir=str(c["root"] / "no_manual"))),
        FileNotFoundError, "does not exist or is empty"),
    "an empty question": (lambda c: read_all([vqa_record(question=" ")]),
                          ValueError, "record 0 .*empty 'question'"),
    "an image that does not decode": (
        lambda c: read_all([vqa_record(image=b"not an image")]),
        ValueError, "record 0 .*image does not decode"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gets_a_clear_error(ctx, case):
  fn, error, fragment = CASES[case]
  with pytest.raises(error, match=fragment):
    fn(ctx)


def test_the_table_is_broad():
  assert len(CASES) >= 25
