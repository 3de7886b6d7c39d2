"""benchmarks/bf16_numerics.py on a tiny saved model: it runs, and a model
compared with itself in one dtype agrees completely."""

import importlib.util
import pathlib

import numpy as np

from pumer_jax.evaluate.score import score
from pumer_jax.models import saved
from train_fixtures import init_model, random_batch, tiny_config

SCRIPT = pathlib.Path(__file__).parent.parent / "benchmarks" / "bf16_numerics.py"


def load_script():
  spec = importlib.util.spec_from_file_location("bf16_numerics", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_bf16_comparison_runs_on_a_saved_model(tmp_path):
  bf16 = load_script()
  config = tiny_config()
  model, params = init_model(config)
  saved.save_model(tmp_path / "model", model.config, params)
  batches = lambda: iter([random_batch(0), random_batch(1)])
  rows = bf16.compare(tmp_path / "model", config, ["pumer"], batches)
  assert [r["method"] for r in rows] == ["pumer"]
  for r in rows:
    assert r["examples"] == 16 and 0.0 <= r["argmax_agreement"] <= 1.0
  same = score(tmp_path / "model", batches, dtype="float32")
  again = score(tmp_path / "model", batches, dtype="float32")
  np.testing.assert_array_equal(same.answers, again.answers)
