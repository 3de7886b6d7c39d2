"""shapes_vqa's generator: scenes, questions and pictures, pure numpy.

Everything is a pure function of `(seed, split, index)` and the generation
options: `generate_example` returns the scene description and the question,
`render` draws the scene. No TFDS here: the builder (`shapes_vqa.py`)
writes what this produces, and tools that only need scenes (recall metrics,
pictures) import this alone.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image

from pumer_jax.data.shapes_vocab import (
    COLORS,
    MAX_OBJECTS,
    QUESTION_TYPES,
    SHAPES,
    SIZES,
)

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
                     position_grid: int = 0, outline: bool = False,
                     patch_aligned: int = 0, position_share: float = 0.0,
                     position_question: str = "relative"
                     ) -> tuple[Scene, Question]:
  """The scene and question of example `index` of `split`: a pure function of its arguments.

  `position_share`, `position_question`: see `ask_question`.
  """
  if split not in SPLIT_STREAMS:
    raise ValueError(f"split {split!r} is not one of {tuple(SPLIT_STREAMS)}.")
  rng = np.random.default_rng((seed, SPLIT_STREAMS[split], index))
  scene = generate_scene(rng, image_size=image_size, min_objects=min_objects,
                         max_objects=max_objects, object_scale=object_scale,
                         texture=texture, position_grid=position_grid,
                         outline=outline, patch_aligned=patch_aligned)
  return scene, ask_question(scene, rng, position_share, position_question)


def generate_scene(rng: np.random.Generator, *, image_size: int, min_objects: int,
                   max_objects: int, object_scale: float = 1.0,
                   texture: str = "textured", position_grid: int = 0,
                   outline: bool = False, patch_aligned: int = 0) -> Scene:
  """Places `min_objects..max_objects` objects with distinct (colour, shape), none touching.

  Radii are `SIZES` times `object_scale` times the image side. With
  `position_grid` > 0, centres lie on a lattice of that many pixels (half a
  patch: each object then falls on the patch grid in one of a few ways). An object that
  finds no free place in 100 tries is left out, so a crowded small image may
  hold fewer than `min_objects`; the scene says what is drawn.

  With `patch_aligned` > 0 (a patch side in pixels, dividing `image_size`;
  not with `position_grid`), centres lie on patch centres, `(k + 0.5) *
  patch_aligned`: with radii under half a patch (`object_scale` small
  enough) each object lies inside one patch, so one token carries its
  shape. 0 (the default): no such constraint.
  """
  if not 1 <= min_objects <= max_objects <= MAX_OBJECTS:
    raise ValueError(f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}; got "
                     f"{min_objects}, {max_objects}.")
  if texture not in TEXTURES:
    raise ValueError(f"texture {texture!r} is not one of {TEXTURES}.")
  if not 0 < object_scale <= 2.5:
    raise ValueError(f"object_scale={object_scale} must be in (0, 2.5].")
  if patch_aligned:
    if patch_aligned < 0 or image_size % patch_aligned:
      raise ValueError(f"patch_aligned={patch_aligned} must be 0 or a positive "
                       f"divisor of image_size={image_size}.")
    if position_grid:
      raise ValueError("patch_aligned and position_grid exclude each other; "
                       f"got {patch_aligned} and {position_grid}.")
    largest = max(SIZES.values()) * object_scale * image_size
    if (np.ceil((largest + 1.0) / patch_aligned - 0.5)
        > np.floor((image_size - largest - 1.0) / patch_aligned - 0.5)):
      raise ValueError(f"patch_aligned: a radius of {largest:.1f} px leaves no "
                       f"patch centre for the object in {image_size} px.")
  elif patch_aligned < 0:
    raise ValueError(f"patch_aligned={patch_aligned} must be >= 0.")
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
      if patch_aligned:  # the nearest patch centre inside [low, high]
        p = patch_aligned
        first, last = np.ceil(low / p - 0.5), np.floor(high / p - 0.5)
        x, y = (float(p * (np.clip(np.floor(v / p), first, last) + 0.5))
                for v in (x, y))
      elif position_grid:
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


def _ask_absolute_position(scene: Scene, rng: np.random.Generator) -> Question | None:
  """Which half of the image one named object is in: left/right or above/below.

  One object, named by colour and shape (unique in the scene), clearly off
  the image's centre line along the asked axis.
  """
  min_offset = 0.08 * scene.image_size
  centre = scene.image_size / 2
  options = []
  for i, a in enumerate(scene.objects):
    if not _unique(scene.objects, color=a.color, shape=a.shape):
      continue
    if abs(a.x - centre) >= min_offset:
      options.append((i, "left or right", "left" if a.x < centre else "right"))
    if abs(a.y - centre) >= min_offset:  # y grows downwards
      options.append((i, "above or below", "above" if a.y < centre else "below"))
  if not options:
    return None
  i, relation, answer = options[rng.integers(len(options))]
  return Question(f"is the {scene.objects[i].name} {relation}?", answer, "position", (i,))


# How a position question is asked (`ask_question(position_question=...)`).
POSITION_ASKERS = {"relative": _ask_position, "absolute": _ask_absolute_position}


_ASKERS = {"color": _ask_color, "shape": _ask_shape, "size": _ask_size, "count": _ask_count,
           "exist": _ask_exist, "position": _ask_position}


def ask_question(scene: Scene, rng: np.random.Generator,
                 position_share: float = 0.0,
                 position_question: str = "relative") -> Question:
  """A question of a uniformly drawn type, redrawn while that type has no answerable form.

  With `position_share` > 0, first, with that probability, a position
  question (where the scene has one); otherwise the uniform draw. 0 (the
  default) draws nothing extra, so the questions are those of before.
  `position_question`: "relative" (is the A left or right of the B?, two
  objects) or "absolute" (is the A left or right?, which half of the image).
  """
  if not 0.0 <= position_share <= 1.0:
    raise ValueError(f"position_share={position_share} must be in [0, 1].")
  if position_question not in POSITION_ASKERS:
    raise ValueError(f"position_question={position_question!r} must be one of "
                     f"{tuple(POSITION_ASKERS)}.")
  askers = dict(_ASKERS, position=POSITION_ASKERS[position_question])
  if position_share and rng.random() < position_share:
    question = askers["position"](scene, rng)
    if question is not None:
      return question
  while True:
    question = askers[QUESTION_TYPES[rng.integers(len(QUESTION_TYPES))]](scene, rng)
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
