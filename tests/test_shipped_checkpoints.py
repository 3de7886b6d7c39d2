"""The shipped checkpoints still score what their READMEs say.

Each `checkpoints/<name>/README.md` states its VQA score on the first 200
test questions of its config's data (`first 200 test questions: X%`);
this loads the model, generates those 200 questions (a pure function of
their index) and checks the score is at least 3 points below the stated
one, the floor issue 14 set.
"""

import pathlib
import re

import pytest

from pumer_jax.configs.base import load_config
from pumer_jax.data import loaders
from pumer_jax.reduce import ReduceConfig
from pumer_jax.search import evaluate

ROOT = pathlib.Path(__file__).parent.parent
SHIPPED = {"vilt_shapes": "configs/vilt_shapes.py:pretrain",
           "meter_shapes": "configs/meter_vqa.py:shapes,pretrain"}
FLOOR_POINTS = 3.0


def stated_score(name: str) -> float:
  text = (ROOT / "checkpoints" / name / "README.md").read_text()
  found = re.search(r"first 200 test questions[^:]*:\s*([0-9.]+)%", text)
  assert found, f"checkpoints/{name}/README.md states no 200-question score"
  return float(found.group(1))


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoint_keeps_its_accuracy(name, tmp_path):
  config = load_config(str(ROOT / SHIPPED[name]))
  config.unlock()
  config.data.data_dir = str(tmp_path)
  config.data.builder_config.update(num_train=0, num_validation=0,
                                    num_test=200)
  config.lock()
  score, _ = evaluate(ROOT / "checkpoints" / name, ReduceConfig(),
                      loaders.eval_batches(config, "test"))
  assert 100 * score >= stated_score(name) - FLOOR_POINTS
