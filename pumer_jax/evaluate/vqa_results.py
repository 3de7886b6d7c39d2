"""The VQA evaluation server's results file: one answer per question.

The server (EvalAI, VQA v2 test-dev and test-std) takes a JSON list
`[{"question_id": int, "answer": str}, ...]` with every question of the
split exactly once. `eval.py` writes one per reducer evaluated on a VQA
task (`WORKDIR/vqa_results_{split}_{method}.json`), the answer decoded
from the model's argmax over its answer vocabulary.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np


class AnswerCollector:
  """Accumulates each valid question's argmax answer, batch by batch."""

  def __init__(self, answer_vocab: Sequence[str]):
    self.vocab = list(answer_vocab)
    self._ids: list[np.ndarray] = []
    self._answers: list[np.ndarray] = []

  def add(self, question_ids, predictions, valid) -> None:
    """question_ids, predictions (answer indices), valid: [B]."""
    valid = np.asarray(valid, bool)
    predictions = np.asarray(predictions)
    if predictions.size and predictions[valid].max(initial=-1) >= len(self.vocab):
      raise ValueError(
          f"a predicted answer index {int(predictions[valid].max())} is past "
          f"the answer vocabulary ({len(self.vocab)} answers): the model's "
          "head and the dataset's vocabulary differ.")
    self._ids.append(np.asarray(question_ids)[valid])
    self._answers.append(predictions[valid])

  def records(self) -> list[dict[str, Any]]:
    """The server's records, in question-id order."""
    ids = np.concatenate(self._ids) if self._ids else np.zeros(0, np.int64)
    answers = (np.concatenate(self._answers) if self._answers
               else np.zeros(0, np.int64))
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
      raise ValueError(
          f"question ids {unique[counts > 1][:5].tolist()} were answered more "
          "than once: the evaluation pass is not one pass over the split.")
    order = np.argsort(ids, kind="stable")
    return [{"question_id": int(ids[i]), "answer": self.vocab[int(answers[i])]}
            for i in order]


def write_results(path: pathlib.Path, records: list[dict[str, Any]]
                  ) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(records) + "\n")
  return path


def results_path(workdir: pathlib.Path, split: str, method: str
                 ) -> pathlib.Path:
  return pathlib.Path(workdir) / f"vqa_results_{split}_{method}.json"
