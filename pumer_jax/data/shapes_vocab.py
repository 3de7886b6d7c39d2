"""shapes_vqa's closed vocabularies: objects, question types, answers, words.

Pure Python, so configs can size a model's embedding table and answer head
(`VOCAB_SIZE`, `len(ANSWERS)`) without importing TFDS or transformers; the
generator and its tokenizer (`shapes_vqa.py`) read the same tuples.
"""

from __future__ import annotations

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
# The classes of a patch head (`shapes_patches`): background, then every
# (size, colour, shape), size slowest. A scene never holds two objects of
# one colour and shape, so a class also names the instance.
PATCH_CLASSES: tuple[str, ...] = ("background", *(
    f"{size} {color} {shape}" for size in SIZES for color in COLORS
    for shape in SHAPES))
# The word-level text vocabulary: every word the templates below can produce.
VOCAB: tuple[str, ...] = (
    "what", "color", "shape", "size", "is", "the", "object", "objects", "how",
    "many", "are", "there", "a", "left", "or", "right", "of", "above", "below",
    "?", *COLORS, *SHAPES, *(s + "s" for s in SHAPES), *SIZES)
# The word-level tokenizer's size: BERT's five special tokens, then VOCAB
# (`tokenizers.word_level_tokenizer`; a test checks the two agree).
VOCAB_SIZE = 5 + len(VOCAB)
