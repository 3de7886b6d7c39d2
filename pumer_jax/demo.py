"""`make demo`: the project's main job on the embedded dataset, on a CPU.

1. Generates `shapes_vqa` (once; no download).
2. Trains a small ViLT unreduced (runs/demo/none).
3. Trains it further with PuMer, distilled from the unreduced model and
   starting from its weights (runs/demo/pumer).
4. Evaluates the unreduced model under none / pumer / tome (reducers off
   the shelf) and the PuMer-trained model under pumer, on the test split,
   and prints one table next to two references: the majority answer and
   the best answer per exact question (what the text alone can reach).

Re-running resumes the finished runs (nothing is retrained or overwritten)
and re-evaluates. Runs live under --root (default runs/demo).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import pathlib
import time

from absl import logging

from pumer_jax.data import shapes_vqa
from pumer_jax.evaluate import runner
from pumer_jax.train import finetune

CONFIG_FILE = pathlib.Path(__file__).parent.parent / "configs" / "vilt_shapes.py"
DEMO_STEPS = {"none": 1200, "pumer": 200}


def load_config(variant: str):
  spec = importlib.util.spec_from_file_location("vilt_shapes", CONFIG_FILE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


def text_only_references(config) -> dict[str, float]:
  """Majority answer, and the best answer per exact question (train -> test).

  Computed from the generator (a pure function of seed and index), the
  same questions the TFDS splits hold.
  """
  b = config.data.builder_config
  by_question = collections.defaultdict(collections.Counter)
  overall = collections.Counter()
  for i in range(b.num_train):
    _, q = shapes_vqa.generate_example(0, i, "train", image_size=b.image_size)
    by_question[q.text][q.answer] += 1
    overall[q.answer] += 1
  majority = overall.most_common(1)[0][0]
  test = [shapes_vqa.generate_example(0, i, "test", image_size=b.image_size)[1]
          for i in range(b.num_test)]
  best = lambda q: (by_question[q.text].most_common(1)[0][0]
                    if by_question[q.text] else majority)
  return {
      "majority answer": sum(q.answer == majority for q in test) / len(test),
      "best answer per question (text only)":
          sum(q.answer == best(q) for q in test) / len(test),
  }


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", default="runs/demo")
  args = parser.parse_args(argv)
  root = pathlib.Path(args.root)

  logging.set_verbosity(logging.WARNING)

  start = time.perf_counter()
  teacher = load_config("method=none")
  teacher.unlock()
  teacher.total_steps = DEMO_STEPS["none"]
  teacher.data.data_dir = str(root / "data")
  teacher.lock()
  print(f"[demo] 1/3 unreduced ViLT, {teacher.total_steps} steps -> "
        f"{root / 'none'}")
  finetune.train_and_evaluate(teacher, root / "none")

  student = load_config("method=pumer")
  student.unlock()
  student.total_steps = DEMO_STEPS["pumer"]
  student.data.data_dir = str(root / "data")
  student.optim.lr = 3e-4
  student.optim.warmup_steps = 20
  student.init_from = str(root / "none" / "model")
  student.distill.teacher = str(root / "none" / "model")
  student.lock()
  print(f"[demo] 2/3 PuMer, distilled from it, {student.total_steps} steps -> "
        f"{root / 'pumer'}")
  finetune.train_and_evaluate(student, root / "pumer")

  print("[demo] 3/3 evaluating on the test split")
  off_the_shelf = runner.main(teacher, root / "none")
  trained = runner.main(student, root / "pumer")
  references = text_only_references(teacher)

  rows = [("unreduced model, " + r["method"], r)
          for r in off_the_shelf["results"]]
  rows += [("PuMer-trained model, " + r["method"], r)
           for r in trained["results"] if r["method"] == "pumer"]
  lines = [f"{'':<34}{'VQA score':>10}{'FLOP ratio':>12}{'speedup':>9}"]
  for name, r in rows:
    lines.append(f"{name:<34}{100 * r['value']:>9.1f}%{r['flop_ratio']:>12.3f}"
                 f"{r['speedup']:>8.2f}x")
  for name, value in references.items():
    lines.append(f"{name:<34}{100 * value:>9.1f}%")
  table = "\n".join(lines)
  print("\n" + table)
  minutes = (time.perf_counter() - start) / 60
  summary = {"rows": [{"model": n, **r} for n, r in rows],
             "references": references, "minutes": minutes}
  (root / "demo_results.json").write_text(json.dumps(summary, indent=2) + "\n")
  print(f"\n[demo] done in {minutes:.1f} min; results in "
        f"{root / 'demo_results.json'}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
