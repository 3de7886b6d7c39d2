"""shapes_vqa: a generated VQA dataset of coloured shapes, the embedded default.

Each image holds a few small coloured shapes (circles, squares, triangles;
small or large; six colours) on a textured grey background, and one template
question about colour, shape, size, count, existence or relative position,
whose answer comes from a closed vocabulary (`ANSWERS`). Objects are small,
so most image patches are background, and a question names one or two of
them (or a category): text-informed pruning has something real to find.

Everything is a pure function of `(seed, split, index)`: `generate_example`
returns the scene description and the question, `render` draws the scene.
The TFDS builder writes them to array_record with no download; the same
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
import io

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds
import transformers

from pumer_jax.data import builder
from pumer_jax.data import tokenizers

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 90, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "cyan": (40, 215, 225),
}
SHAPES = ("circle", "square", "triangle")
# Object radius as a fraction of the image side: 5 and 9 pixels at 96x96, so an
# object covers one to four 16x16 patches.
SIZES: dict[str, float] = {"small": 0.055, "large": 0.095}
MAX_OBJECTS = 5
QUESTION_TYPES = ("color", "shape", "size", "count", "exist", "position")
ANSWERS: tuple[str, ...] = (
    *COLORS, *SHAPES, *SIZES, *(str(n) for n in range(MAX_OBJECTS + 1)),
    "yes", "no", "left", "right", "above", "below")
# The word-level text vocabulary: every word the templates below can produce.
VOCAB: tuple[str, ...] = (
    "what", "color", "shape", "size", "is", "the", "object", "objects", "how",
    "many", "are", "there", "a", "left", "or", "right", "of", "above", "below",
    "?", *COLORS, *SHAPES, *(s + "s" for s in SHAPES), *SIZES)
# Each split draws from its own random stream, so splits never share a scene.
SPLIT_STREAMS = {"train": 0, "validation": 1, "test": 2}
# Copies of the answer stored in `answers`, as VQA v2's ten human answers.
NUM_ANNOTATORS = 10
# Backgrounds: "textured" (blotches, faint stripes, noise) or "calm" (weak
# blotches and noise only).
TEXTURES = ("textured", "calm")
# The colour of an object's outline (when drawn): the same for every object,
# so a shape's contour does not depend on its colour.
OUTLINE_RGB = (25, 25, 25)


@dataclasses.dataclass(frozen=True)
class ShapeObject:
  """One drawn object; `x`, `y` (centre) and `radius` are in pixels."""

  color: str
  shape: str
  size: str
  x: float
  y: float
  radius: float

  @property
  def name(self) -> str:
    return f"{self.color} {self.shape}"


@dataclasses.dataclass(frozen=True)
class Scene:
  """The full description of an image: `render(scene)` depends on nothing else."""

  image_size: int
  objects: tuple[ShapeObject, ...]
  background: tuple[int, int, int]  # base RGB of the texture
  texture_seed: int
  texture: str = "textured"  # one of TEXTURES
  outline: bool = False  # objects drawn with a dark one-pixel outline


@dataclasses.dataclass(frozen=True)
class Question:
  """A question, its answer (in `ANSWERS`), its type, and the objects it names."""

  text: str
  answer: str
  kind: str
  referents: tuple[int, ...]  # indices into Scene.objects


# ----------------------------------------------------------------------------
# Scenes.
# ----------------------------------------------------------------------------


def generate_example(seed: int, index: int, split: str = "train", *, image_size: int = 96,
                     min_objects: int = 2, max_objects: int = MAX_OBJECTS,
                     object_scale: float = 1.0, texture: str = "textured",
                     position_grid: int = 0, outline: bool = False
                     ) -> tuple[Scene, Question]:
  """The scene and question of example `index` of `split`: a pure function of its arguments."""
  if split not in SPLIT_STREAMS:
    raise ValueError(f"split {split!r} is not one of {tuple(SPLIT_STREAMS)}.")
  rng = np.random.default_rng((seed, SPLIT_STREAMS[split], index))
  scene = generate_scene(rng, image_size=image_size, min_objects=min_objects,
                         max_objects=max_objects, object_scale=object_scale,
                         texture=texture, position_grid=position_grid,
                         outline=outline)
  return scene, ask_question(scene, rng)


def generate_scene(rng: np.random.Generator, *, image_size: int, min_objects: int,
                   max_objects: int, object_scale: float = 1.0,
                   texture: str = "textured", position_grid: int = 0,
                   outline: bool = False) -> Scene:
  """Places `min_objects..max_objects` objects with distinct (colour, shape), none touching.

  Radii are `SIZES` times `object_scale` times the image side. With
  `position_grid` > 0, centres lie on a lattice of that many pixels (half a
  patch: each object then falls on the patch grid in one of a few ways). An object that
  finds no free place in 100 tries is left out, so a crowded small image may
  hold fewer than `min_objects`; the scene says what is drawn.
  """
  if not 1 <= min_objects <= max_objects <= MAX_OBJECTS:
    raise ValueError(f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}; got "
                     f"{min_objects}, {max_objects}.")
  if texture not in TEXTURES:
    raise ValueError(f"texture {texture!r} is not one of {TEXTURES}.")
  if not 0 < object_scale <= 2.5:
    raise ValueError(f"object_scale={object_scale} must be in (0, 2.5].")
  pairs = [(c, s) for c in COLORS for s in SHAPES]
  count = int(rng.integers(min_objects, max_objects + 1))
  chosen = rng.choice(len(pairs), size=count, replace=False)
  gap = 0.03 * image_size
  objects: list[ShapeObject] = []
  for pair in chosen:
    color, shape = pairs[pair]
    size = str(rng.choice(list(SIZES)))
    radius = SIZES[size] * object_scale * image_size
    low, high = radius + 1.0, image_size - radius - 1.0
    for _ in range(100):
      x, y = rng.uniform(low, high, size=2)
      if position_grid:
        x, y = (float(np.clip(position_grid * np.round(v / position_grid),
                              position_grid * np.ceil(low / position_grid),
                              position_grid * np.floor(high / position_grid)))
                for v in (x, y))
      if all(np.hypot(x - o.x, y - o.y) >= radius + o.radius + gap for o in objects):
        objects.append(ShapeObject(color, shape, size, float(x), float(y), float(radius)))
        break
  grey = int(rng.integers(100, 161))
  tint = rng.integers(-12, 13, size=3)
  background = tuple(int(v) for v in np.clip(grey + tint, 0, 255))
  return Scene(image_size, tuple(objects), background, int(rng.integers(2**31)), texture,
               outline)


# ----------------------------------------------------------------------------
# Questions.
# ----------------------------------------------------------------------------


def _unique(objects: tuple[ShapeObject, ...], **attributes: str) -> bool:
  matches = [o for o in objects if all(getattr(o, k) == v for k, v in attributes.items())]
  return len(matches) == 1


def _ask_color(scene: Scene, rng: np.random.Generator) -> Question | None:
  objs = scene.objects
  options = []
  for i, o in enumerate(objs):
    if _unique(objs, shape=o.shape):
      options.append((i, f"what color is the {o.shape}?"))
    elif _unique(objs, shape=o.shape, size=o.size):
      options.append((i, f"what color is the {o.size} {o.shape}?"))
  if not options:
    return None
  i, text = options[rng.integers(len(options))]
  return Question(text, objs[i].color, "color", (i,))


def _ask_shape(scene: Scene, rng: np.random.Generator) -> Question | None:
  objs = scene.objects
  options = []
  for i, o in enumerate(objs):
    if _unique(objs, color=o.color):
      options.append((i, f"what shape is the {o.color} object?"))
    elif _unique(objs, color=o.color, size=o.size):
      options.append((i, f"what shape is the {o.size} {o.color} object?"))
  if not options:
    return None
  i, text = options[rng.integers(len(options))]
  return Question(text, objs[i].shape, "shape", (i,))


def _ask_size(scene: Scene, rng: np.random.Generator) -> Question | None:
  if not scene.objects:
    return None
  i = int(rng.integers(len(scene.objects)))
  o = scene.objects[i]
  return Question(f"what size is the {o.name}?", o.size, "size", (i,))


def _ask_count(scene: Scene, rng: np.random.Generator) -> Question:
  if rng.random() < 0.5:
    color = str(rng.choice(list(COLORS)))
    text, attribute = f"how many {color} objects are there?", ("color", color)
  else:
    shape = str(rng.choice(SHAPES))
    text, attribute = f"how many {shape}s are there?", ("shape", shape)
  key, value = attribute
  referents = tuple(i for i, o in enumerate(scene.objects) if getattr(o, key) == value)
  return Question(text, str(len(referents)), "count", referents)


def _ask_exist(scene: Scene, rng: np.random.Generator) -> Question:
  present = [(o.color, o.shape) for o in scene.objects]
  absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
  if present and rng.random() < 0.5:
    i = int(rng.integers(len(present)))
    color, shape = present[i]
    referents: tuple[int, ...] = (i,)
  else:
    color, shape = absent[rng.integers(len(absent))]
    referents = ()
  answer = "yes" if referents else "no"
  return Question(f"is there a {color} {shape}?", answer, "exist", referents)


def _ask_position(scene: Scene, rng: np.random.Generator) -> Question | None:
  """Left/right or above/below, only along an axis where the centres differ clearly."""
  min_offset = 0.08 * scene.image_size
  options = []
  for i, a in enumerate(scene.objects):
    for j, b in enumerate(scene.objects):
      if i == j:
        continue
      if abs(a.x - b.x) >= min_offset:
        options.append((i, j, "left or right of", "left" if a.x < b.x else "right"))
      if abs(a.y - b.y) >= min_offset:  # y grows downwards
        options.append((i, j, "above or below", "above" if a.y < b.y else "below"))
  if not options:
    return None
  i, j, relation, answer = options[rng.integers(len(options))]
  a, b = scene.objects[i], scene.objects[j]
  return Question(f"is the {a.name} {relation} the {b.name}?", answer, "position", (i, j))


_ASKERS = {"color": _ask_color, "shape": _ask_shape, "size": _ask_size, "count": _ask_count,
           "exist": _ask_exist, "position": _ask_position}


def ask_question(scene: Scene, rng: np.random.Generator) -> Question:
  """A question of a uniformly drawn type, redrawn while that type has no answerable form."""
  while True:
    question = _ASKERS[QUESTION_TYPES[rng.integers(len(QUESTION_TYPES))]](scene, rng)
    if question is not None:
      return question


# ----------------------------------------------------------------------------
# Rendering.
# ----------------------------------------------------------------------------


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
  """Bilinear upsampling of a [k, k, C] grid to [size, size, C]."""
  k = grid.shape[0]
  t = (np.arange(size) + 0.5) / size * (k - 1)
  i0 = np.minimum(t.astype(np.int64), k - 2)
  w = (t - i0)[:, None, None]
  rows = grid[i0] * (1 - w) + grid[i0 + 1] * w  # [size, k, C]
  w = w[:, 0][None, :, :]
  return rows[:, i0] * (1 - w) + rows[:, i0 + 1] * w  # [size, size, C]


def object_mask(obj: ShapeObject, image_size: int) -> np.ndarray:
  """bool [S, S]: the pixels (by their centres) that `obj` covers."""
  centres = np.arange(image_size) + 0.5
  dy = centres[:, None] - obj.y
  dx = centres[None, :] - obj.x
  r = obj.radius
  if obj.shape == "circle":
    return dx**2 + dy**2 <= r**2
  if obj.shape == "square":  # side 1.7 r: about the circle's area
    return (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
  if obj.shape == "triangle":  # apex up, base 2 r wide
    return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
  raise ValueError(f"unknown shape {obj.shape!r}")


def render(scene: Scene) -> np.ndarray:
  """Draws the scene: uint8 [S, S, 3]. Deterministic in `scene` alone."""
  s = scene.image_size
  rng = np.random.default_rng(scene.texture_seed)
  if scene.texture == "calm":  # weak blotches and pixel noise only
    blotches = (_upsample(rng.uniform(-8, 8, size=(4, 4, 1)), s)
                + _upsample(rng.uniform(-3, 3, size=(4, 4, 3)), s))
    noise = rng.uniform(-3, 3, size=(s, s, 3))
    image = np.asarray(scene.background, np.float64) + blotches + noise
  else:
    # Texture: smooth blotches, faint stripes at a random angle, pixel noise.
    blotches = (_upsample(rng.uniform(-25, 25, size=(6, 6, 1)), s)  # [S, S, 1] brightness
                + _upsample(rng.uniform(-8, 8, size=(6, 6, 3)), s))  # [S, S, 3] faint tint
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 14)
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float64)
    stripes = 10 * np.sin(2 * np.pi * (xs * np.cos(angle) + ys * np.sin(angle)) / period)
    noise = rng.uniform(-4, 4, size=(s, s, 3))
    image = np.asarray(scene.background, np.float64) + blotches + stripes[..., None] + noise
  for obj in scene.objects:
    mask = object_mask(obj, s)
    shade = np.asarray(COLORS[obj.color], np.float64) + rng.uniform(-6, 6, size=(s, s, 3))
    image = np.where(mask[..., None], shade, image)
    if scene.outline:  # the mask's border pixels: the same dark line for every colour
      inner = mask.copy()
      inner[1:] &= mask[:-1]
      inner[:-1] &= mask[1:]
      inner[:, 1:] &= mask[:, :-1]
      inner[:, :-1] &= mask[:, 1:]
      image = np.where((mask & ~inner)[..., None], OUTLINE_RGB, image)
  return np.clip(np.round(image), 0, 255).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
  """PNG bytes of a uint8 [H, W, 3] image (lossless, deterministic)."""
  buffer = io.BytesIO()
  Image.fromarray(image, "RGB").save(buffer, format="PNG")
  return buffer.getvalue()


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
    for index in range(num_examples):
      scene, question = generate_example(
          config.seed, index, split, image_size=config.image_size,
          min_objects=min_objects, max_objects=config.max_objects,
          object_scale=config.object_scale, texture=config.texture,
          position_grid=config.position_grid, outline=config.outline)
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
