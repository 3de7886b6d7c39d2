"""The VQA evaluation server's results file, by hand and from eval."""

import json

import numpy as np
import pytest

from pumer_jax.evaluate import report as report_lib
from pumer_jax.evaluate import runner
from pumer_jax.evaluate.vqa_results import AnswerCollector
from pumer_jax.models.inputs import model_inputs

from train_fixtures import random_batch, save_tiny_model, tiny_config

VOCAB = ["yes", "no", "2", "red", "left"]  # the tiny model's 5 labels


def test_collector_by_hand():
  c = AnswerCollector(VOCAB)
  c.add([30, 10, 99], [0, 3, 4], [True, True, False])  # 99 is padding
  c.add([20], [1], [True])
  assert c.records() == [{"question_id": 10, "answer": "red"},
                         {"question_id": 20, "answer": "no"},
                         {"question_id": 30, "answer": "yes"}]
  c.add([20], [2], [True])
  with pytest.raises(ValueError, match=r"question ids \[20\] were answered "
                     "more than once"):
    c.records()
  with pytest.raises(ValueError, match="past the answer vocabulary"):
    AnswerCollector(VOCAB).add([1], [5], [True])


def _batches(labelled=True, num_examples=19, batch_size=8):
  batches = []
  for start in range(0, num_examples, batch_size):
    batch = random_batch(100 + start, batch=batch_size)
    batch["valid"] = np.arange(start, start + batch_size) < num_examples
    batch["question_id"] = np.arange(start, start + batch_size) + 1000
    if not labelled:  # a test split: no annotated answers
      batch["labels"] = np.zeros_like(batch["labels"])
    batches.append(batch)
  return lambda: iter(batches)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
  return save_tiny_model(tmp_path_factory.mktemp("model"))


def test_eval_answers_every_question_once_with_the_models_argmax(saved_model):
  directory, model, params = saved_model
  make_batches = _batches()
  report = runner.evaluate(directory, tiny_config(), make_batches,
                           ["none", "tome"], answer_vocab=VOCAB)
  none = report["results"][0]
  want = {}
  for batch in make_batches():
    logits = model.apply({"params": params}, **model_inputs(batch))["logits"]
    for qid, a, v in zip(batch["question_id"], np.argmax(logits, -1),
                         batch["valid"]):
      if v:
        want[int(qid)] = VOCAB[int(a)]
  assert {r["question_id"]: r["answer"] for r in none["answers"]} == want
  assert [r["question_id"] for r in none["answers"]] == sorted(want)
  assert len(report["results"][1]["answers"]) == 19
  assert none["value"] is not None


def test_a_split_without_answers_reports_no_score(saved_model):
  directory, _, _ = saved_model
  report = runner.evaluate(directory, tiny_config(), _batches(labelled=False),
                           ["none"], answer_vocab=VOCAB)
  assert report["results"][0]["value"] is None
  assert "no answers" in report_lib.format_table(report)


def test_eval_main_writes_one_server_file_per_method(saved_model, tmp_path,
                                                     monkeypatch):
  directory, _, _ = saved_model
  config = tiny_config(**{"eval.checkpoint": str(directory),
                          "eval.methods": "none,pumer",
                          "eval.split": "test_dev"})
  monkeypatch.setattr(runner.loaders, "prepared_builder", lambda c: None)
  monkeypatch.setattr(runner.loaders, "answer_vocab_for", lambda c, b: VOCAB)
  monkeypatch.setattr(runner.loaders, "eval_batches",
                      lambda c, split: _batches(labelled=False))
  report = runner.main(config, tmp_path)
  for method in ("none", "pumer"):
    path = tmp_path / f"vqa_results_test_dev_{method}.json"
    records = json.loads(path.read_text())
    assert len(records) == 19
    assert all(set(r) == {"question_id", "answer"} for r in records)
    assert all(isinstance(r["question_id"], int) and r["answer"] in VOCAB
               for r in records)
  saved_report = json.loads((tmp_path / "eval_test_dev.json").read_text())
  assert all("answers" not in r and r["results_file"].endswith(".json")
             for r in saved_report["results"])
  assert report["results"][0]["value"] is None
