"""VQA answers: the official normalisation, the answer vocabulary, soft scores.

VQA v2 gives ten human answers per question. A model is trained on a fixed
vocabulary of frequent answers (ViLT: the 3,129 most frequent) with soft
targets `min(1, count / 3)`, where `count` is how many of the ten humans gave
that answer after the official evaluation's normalisation. The vocabulary
is computed from the train split once and saved beside the prepared data.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

# ViLT's answer vocabulary size for VQA v2.
VQA_NUM_ANSWERS = 3129
# File written beside the prepared data by `load_or_build_answer_vocab`.
ANSWER_VOCAB_FILE = "answer_vocab.json"

# The tables of the official VQA evaluation (vqaEval.py, https://visualqa.org).
# Mixed-case keys ("Im", "Ive") never match after lowercasing; kept as there.
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd",
    "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})
# The official pattern, typo included: `(?!<=\d)` is a lookahead, not a
# lookbehind, so a period is stripped unless a digit follows it.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_",
                "-", ">", "<", "@", "`", ",", "?", "!")


def _process_punctuation(text: str) -> str:
  out = text
  for p in _PUNCTUATION:
    if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
      out = out.replace(p, "")
    else:
      out = out.replace(p, " ")
  # The official code passes re.UNICODE (32) as `count`; 32 periods never occur.
  return _PERIOD_STRIP.sub("", out)


def _process_digit_article(text: str) -> str:
  words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
  words = [w for w in words if w not in _ARTICLES]
  return " ".join(_CONTRACTIONS.get(w, w) for w in words)


@functools.lru_cache(maxsize=1 << 16)  # The same few answers recur across questions.
def normalize_answer(answer: str) -> str:
  """Normalises an answer as the official VQA evaluation does.

  Whitespace is collapsed, punctuation removed or turned into spaces, number
  words become digits ("two" -> "2"), articles are dropped, and contractions
  get their apostrophe ("dont" -> "don't").
  """
  answer = answer.replace("\n", " ").replace("\t", " ").strip()
  return _process_digit_article(_process_punctuation(answer))


def majority_answer(answers: Sequence[str]) -> str:
  """The most frequent normalised answer; ties go to the alphabetically first."""
  counts = collections.Counter(normalize_answer(a) for a in answers)
  return min(counts, key=lambda a: (-counts[a], a))


def build_answer_vocab(answer_lists: Iterable[Sequence[str]],
                       num_answers: int = VQA_NUM_ANSWERS) -> list[str]:
  """The `num_answers` most frequent majority answers, most frequent first.

  As in ViLT (and the bottom-up-attention recipe it follows), each question
  votes once, for its majority human answer; questions without answers (the
  test splits) are skipped. Ties in frequency are broken alphabetically, so
  the vocabulary is deterministic.
  """
  counts = collections.Counter(majority_answer(a) for a in answer_lists if len(a))
  ranked = sorted(counts, key=lambda a: (-counts[a], a))
  return ranked[:num_answers]


def soft_scores(answers: Sequence[str], answer_index: Mapping[str, int]) -> np.ndarray:
  """VQA soft targets: `min(1, count / 3)` per vocabulary answer.

  Args:
    answers: the human answers of one question (raw; normalised here).
    answer_index: vocabulary answer -> column.

  Returns:
    float32 [len(answer_index)]; answers outside the vocabulary score nowhere.
  """
  scores = np.zeros((len(answer_index),), np.float32)
  for answer, count in collections.Counter(normalize_answer(a) for a in answers).items():
    column = answer_index.get(answer)
    if column is not None:
      scores[column] = min(1.0, count / 3.0)
  return scores


def save_answer_vocab(vocab: Sequence[str], path: str | os.PathLike) -> None:
  """Writes the vocabulary as a JSON list (the index of an answer is its label)."""
  with open(path, "w") as f:
    json.dump(list(vocab), f, indent=0)


def load_answer_vocab(path: str | os.PathLike) -> list[str]:
  """Reads a vocabulary written by `save_answer_vocab`."""
  with open(path) as f:
    vocab = json.load(f)
  if not isinstance(vocab, list) or not all(isinstance(a, str) for a in vocab):
    raise ValueError(f"{path}: expected a JSON list of answer strings.")
  return vocab


def load_or_build_answer_vocab(builder, split: str = "train",
                               num_answers: int = VQA_NUM_ANSWERS) -> list[str]:
  """The answer vocabulary saved beside `builder`'s data, computed on first use.

  Args:
    builder: a prepared TFDS builder whose examples have `answers` (VQA v2).
    split: the split to count answers on (the train split, as ViLT).
    num_answers: vocabulary size.

  Returns:
    The vocabulary, read from `<builder.data_dir>/answer_vocab.json` if present,
    else counted from `split` (one pass over its records) and written there.
  """
  import tensorflow_datasets as tfds  # Deferred: this module is pure Python otherwise.

  path = os.path.join(os.fspath(builder.data_dir), ANSWER_VOCAB_FILE)
  if os.path.exists(path):
    vocab = load_answer_vocab(path)
    if len(vocab) > num_answers:
      raise ValueError(f"{path} holds {len(vocab)} answers; expected at most {num_answers}. "
                       "Delete it to recompute.")
    return vocab
  skip_images = {name: tfds.decode.SkipDecoding()
                 for name, feature in builder.info.features.items()
                 if isinstance(feature, tfds.features.Image)}
  # The text alone where the images are joined from a table (not read here).
  text_source = getattr(builder, "as_text_source", builder.as_data_source)
  source = text_source(split=split, decoders=skip_images)
  answer_lists = ([_text(a) for a in source[i]["answers"]] for i in range(len(source)))
  vocab = build_answer_vocab(answer_lists, num_answers)
  save_answer_vocab(vocab, path)
  return vocab


def _text(value: bytes | str) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)
