"""A shapes_vqa model's score per question type, beside the text-only
reference (the best answer per exact question text, from the train split)."""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from pumer_jax.data.shapes_vocab import QUESTION_TYPES
from pumer_jax.evaluate.score import SplitScores, bootstrap_ci
from pumer_jax.evaluate.text_only import text_only_answers


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def per_type(scored: SplitScores, records, train_records
             ) -> dict[str, dict[str, Any]]:
  """{"all" | question type: n, model score, its 95% interval, text only}.

  Args:
    scored: the model's `SplitScores` on a split.
    records: that split's records (`question`, `answers`,
      `question_type`), indexed by `scored.example_ids`.
    train_records: the train split's, for the text-only reference.
  """
  best, majority = text_only_answers(train_records)
  model = collections.defaultdict(list)
  text = collections.defaultdict(list)
  for index, value in zip(scored.example_ids, scored.scores):
    record = records[int(index)]
    kind = _text(record["question_type"])
    answer = _text(record["answers"][0])
    guess = best.get(_text(record["question"]), majority)
    for key in ("all", kind):
      model[key].append(float(value))
      text[key].append(float(guess == answer))
  return {k: dict(n=len(model[k]), model=float(np.mean(model[k])),
                  ci95=bootstrap_ci(np.asarray(model[k])),
                  text_only=float(np.mean(text[k])))
          for k in ("all", *QUESTION_TYPES) if model[k]}


def format_per_type(table: dict[str, dict[str, Any]]) -> str:
  """The table as markdown."""
  lines = ["| type | n | model | 95% CI | text only |", "|---|---|---|---|---|"]
  for kind, r in table.items():
    lo, hi = r["ci95"]
    lines.append(f"| {kind} | {r['n']} | {100 * r['model']:.1f}% | "
                 f"[{100 * lo:.1f}, {100 * hi:.1f}] | "
                 f"{100 * r['text_only']:.1f}% |")
  return "\n".join(lines)
