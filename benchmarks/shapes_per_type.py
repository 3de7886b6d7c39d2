r"""Per-question-type VQA score of a shapes_vqa model, next to the text-only reference.

  python benchmarks/shapes_per_type.py --config configs/vilt_shapes.py:pretrain \
      --workdir runs/shapes_pretrain [--config.eval.split=test]

Reads the model at `config.eval.checkpoint` (else WORKDIR/model), evaluates
it unreduced on `config.eval.split`, and prints (and writes to
WORKDIR/per_type_<split>.json) the score overall and per question type, and
the same for the text-only reference: the best answer per exact question
text, counted on the train split (the majority answer for unseen texts).
"""

from __future__ import annotations

import collections
import json
import pathlib

import jax
import numpy as np
import tensorflow_datasets as tfds

from pumer_jax import entry
from pumer_jax.data import loaders, shapes_vqa
from pumer_jax.evaluate.text_only import text_only_answers
from pumer_jax.models import saved
from pumer_jax.models.inputs import model_inputs


def main(config, workdir):
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  split = config.eval.split
  model_dir = pathlib.Path(config.eval.checkpoint or workdir / "model")
  model, variables = saved.load_model(model_dir)
  builder = loaders.prepared_builder(config)
  skip = {"image": tfds.decode.SkipDecoding()}
  source = builder.as_data_source(split=split, decoders=skip)
  kinds = [source[i]["question_type"].decode() for i in range(len(source))]
  texts = [source[i]["question"].decode() for i in range(len(source))]
  truth = [source[i]["answers"][0].decode() for i in range(len(source))]
  best, majority = text_only_answers(
      builder.as_data_source(split="train", decoders=skip))

  forward = jax.jit(lambda p, b: model.apply({"params": p}, **model_inputs(b),
                                             train=False)["logits"])
  predicted = {}
  for batch in loaders.eval_batches(config, split)():
    logits = np.asarray(forward(variables["params"], batch))
    for row in np.flatnonzero(batch["valid"]):
      predicted[int(batch["example_id"][row])] = shapes_vqa.ANSWERS[
          int(logits[row].argmax())]
  assert len(predicted) == len(source)

  model_hits = collections.defaultdict(list)
  text_hits = collections.defaultdict(list)
  for i, kind in enumerate(kinds):
    for key in ("all", kind):
      model_hits[key].append(predicted[i] == truth[i])
      text_hits[key].append(best.get(texts[i], majority) == truth[i])
  order = ["all", *shapes_vqa.QUESTION_TYPES]
  report = {k: dict(n=len(model_hits[k]), model=float(np.mean(model_hits[k])),
                    text_only=float(np.mean(text_hits[k])))
            for k in order if model_hits[k]}
  print(f"{'type':<10}{'n':>6}{'model':>9}{'text only':>11}")
  for k, r in report.items():
    print(f"{k:<10}{r['n']:>6}{100 * r['model']:>8.1f}%"
          f"{100 * r['text_only']:>10.1f}%")
  path = workdir / f"per_type_{split}.json"
  path.write_text(json.dumps(dict(model_dir=str(model_dir), split=split,
                                  per_type=report), indent=2) + "\n")
  print(f"wrote {path}")
  return report


if __name__ == "__main__":
  entry.run(main)
