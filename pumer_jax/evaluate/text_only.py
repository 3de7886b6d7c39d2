"""What the question text alone reaches on shapes_vqa: the reference a model
that reads the image must beat."""

from __future__ import annotations

import collections

import numpy as np


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def text_only_answers(train_source) -> tuple[dict[str, str], str]:
  """(best answer per exact question text, majority answer) on a split."""
  by_question = collections.defaultdict(collections.Counter)
  overall = collections.Counter()
  for i in range(len(train_source)):
    example = train_source[i]
    text, answer = _text(example["question"]), _text(example["answers"][0])
    by_question[text][answer] += 1
    overall[answer] += 1
  best = {q: c.most_common(1)[0][0] for q, c in by_question.items()}
  return best, overall.most_common(1)[0][0]


def text_only_scores(train_source, test_source) -> dict[str, float]:
  """Majority answer and best answer per question text (train -> test)."""
  best, majority = text_only_answers(train_source)
  truth = [_text(test_source[i]["answers"][0]) for i in range(len(test_source))]
  texts = [_text(test_source[i]["question"]) for i in range(len(test_source))]
  return {
      "majority answer": float(np.mean([t == majority for t in truth])),
      "best answer per question (text only)": float(np.mean(
          [best.get(q, majority) == t for q, t in zip(texts, truth)])),
  }
