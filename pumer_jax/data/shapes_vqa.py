"""shapes_vqa: a generated VQA dataset of coloured shapes, the embedded default.

Each image holds a few small coloured shapes (circles, squares, triangles;
small or large; six colours) on a textured grey background, and one template
question about colour, shape, size, count, existence or position (relative
to another object, or the half of the image: `position_question`),
whose answer comes from a closed vocabulary (`ANSWERS`). Objects are small,
so most image patches are background, and a question names one or two of
them (or a category): text-informed pruning has something real to find.

Everything is a pure function of `(seed, split, index)`: `generate_example`
returns the scene description and the question, `render` draws the scene
(both in `shapes_scene.py`, re-exported here; the vocabularies are
`shapes_vocab.py`). This module's TFDS builder writes them to array_record
with no download; the same
config gives the same bytes. Answers are stored as ten identical "human"
answers, so the VQA soft-score pipeline applies unchanged (score 1 on the
answer).

Usage:
  builder = ShapesVqa(data_dir=...)   # config "default": 96x96, 10k/500/500
  builder.download_and_prepare()
  loader = pipeline.make_loader(builder, "train", tokenizer=tokenizer(),
                                answer_vocab=ANSWERS, task="vqa", ...)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
import transformers

from pumer_jax.data import builder
from pumer_jax.data import tokenizers
from pumer_jax.data.shapes_scene import (  # the generator, re-exported
    NUM_ANNOTATORS,
    OUTLINE_RGB,
    SPLIT_STREAMS,
    TEXTURES,
    Question,
    Scene,
    ShapeObject,
    ask_question,
    encode_png,
    generate_example,
    generate_scene,
    object_mask,
    render,
)
from pumer_jax.data.shapes_vocab import (
    ANSWERS,
    COLORS,
    MAX_OBJECTS,
    QUESTION_TYPES,
    SHAPES,
    SIZES,
    VOCAB,
)

# The generator's and the vocabularies' names stay importable from here.
__all__ = [
    "ANSWERS",
    "COLORS",
    "MAX_OBJECTS",
    "NUM_ANNOTATORS",
    "OUTLINE_RGB",
    "QUESTION_TYPES",
    "Question",
    "SHAPES",
    "SIZES",
    "SPLIT_STREAMS",
    "Scene",
    "ShapeObject",
    "ShapesVqa",
    "ShapesVqaConfig",
    "TEXTURES",
    "VOCAB",
    "ask_question",
    "encode_png",
    "generate_example",
    "generate_scene",
    "object_mask",
    "render",
    "tokenizer",
]

def tokenizer() -> transformers.PreTrainedTokenizerFast:
  """The word-level tokenizer over `VOCAB` ([CLS] question [SEP]); 5 special + len(VOCAB) ids."""
  return tokenizers.word_level_tokenizer(VOCAB)


# ----------------------------------------------------------------------------
# TFDS builder.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class ShapesVqaConfig(tfds.core.BuilderConfig):
  """Generation settings; give a custom config its own `name` (it names the data directory)."""

  image_size: int = 96
  num_train: int = 10_000
  num_validation: int = 500
  num_test: int = 500
  seed: int = 0
  min_objects: int = 2
  max_objects: int = MAX_OBJECTS
  object_scale: float = 1.0  # multiplies every radius in SIZES
  texture: str = "textured"  # background, one of TEXTURES
  # The train split's fewest objects per scene (0: min_objects). 1 mixes in
  # single-object scenes, where a question's object is the only one: they
  # teach what shapes and colours look like before which object is meant.
  train_min_objects: int = 0
  position_grid: int = 0  # centres on a lattice of this many pixels (0: anywhere)
  outline: bool = False  # a dark one-pixel outline around every object
  # Centres on the centres of patches this many pixels wide (0: off); see
  # `generate_scene`.
  patch_aligned: int = 0
  # The train split only: the probability of asking a position question
  # first (where the scene has two objects apart), before the uniform draw;
  # 0: uniform, as validation and test always are.
  train_position_share: float = 0.0
  # "relative" (is the A left or right of the B?) or "absolute" (is the A
  # left or right?: the half of the image it is in); see `ask_question`.
  position_question: str = "relative"


class ShapesVqa(builder.ArrayRecordBuilder):
  """Generated shapes VQA (see the module docstring); no download, no manual files."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [ShapesVqaConfig(
      name="default", description="96x96 images; 10,000 train, 500 validation, 500 test.")]

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split("\n\n")[1],
        features=tfds.features.FeaturesDict({
            "question_id": np.int64,
            "image_id": np.int64,
            "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
            "question": tfds.features.Text(),
            "answers": tfds.features.Sequence(tfds.features.Text()),
            "question_type": tfds.features.Text(),
            # The scene, for analysis (e.g. do pruned tokens cover the named objects?).
            "objects": tfds.features.Sequence({
                "color": tfds.features.Text(),
                "shape": tfds.features.Text(),
                "size": tfds.features.Text(),
                "center": tfds.features.Tensor(shape=(2,), dtype=np.float32),  # (y, x) px
                "radius": np.float32,
            }),
            "referents": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        }),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download.
    config = self.builder_config
    sizes = {"train": config.num_train, "validation": config.num_validation,
             "test": config.num_test}
    return {split: self._generate_examples(split, n) for split, n in sizes.items() if n > 0}

  def _generate_examples(self, split: str, num_examples: int):
    config = self.builder_config
    min_objects = config.min_objects
    if split == "train" and config.train_min_objects:
      min_objects = config.train_min_objects
    position_share = config.train_position_share if split == "train" else 0.0
    for index in range(num_examples):
      scene, question = generate_example(
          config.seed, index, split, image_size=config.image_size,
          min_objects=min_objects, max_objects=config.max_objects,
          object_scale=config.object_scale, texture=config.texture,
          position_grid=config.position_grid, outline=config.outline,
          patch_aligned=config.patch_aligned, position_share=position_share,
          position_question=config.position_question)
      yield index, {
          "question_id": index,
          "image_id": index,
          "image": encode_png(render(scene)),
          "question": question.text,
          "answers": [question.answer] * NUM_ANNOTATORS,
          "question_type": question.kind,
          "objects": [{"color": o.color, "shape": o.shape, "size": o.size,
                       "center": np.array([o.y, o.x], np.float32),
                       "radius": np.float32(o.radius)} for o in scene.objects],
          "referents": np.asarray(question.referents, np.int32),
      }
