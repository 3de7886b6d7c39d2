"""EfficientVLM end to end on a tiny ViLT: distill, then prune, in-process."""

import json

import numpy as np
import pytest

from pumer_jax import checkpoint, train_lib
from pumer_jax.compress import gates as gates_lib
from pumer_jax.models import Vilt
from train_fixtures import CountingIterator, init_model, tiny_config

STAGE = {"total_steps": 3, "checkpoint_every": 10}


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
  config = tiny_config(**{"model.num_hidden_layers": 4})
  model, params = init_model(config)
  directory = tmp_path_factory.mktemp("teacher") / "model"
  checkpoint.save_model(directory, model.config, params)
  return directory


def metrics(workdir):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines]


@pytest.mark.slow
def test_distill_then_prune(teacher_dir, tmp_path):
  student_dir = tmp_path / "student"
  config = tiny_config(stage="distill", teacher_checkpoint=str(teacher_dir),
                       **STAGE)
  train_lib.train_and_evaluate(config, student_dir, CountingIterator())
  student, _ = checkpoint.load_model(student_dir / "model")
  assert isinstance(student, Vilt)
  assert student.config.num_hidden_layers == 2
  last = metrics(student_dir)[-1]
  for key in ("kd_logits", "kd_attn", "kd_hidden", "task_loss"):
    assert np.isfinite(last[key]), key
  assert last["kd_attn"] > 0 and last["kd_hidden"] > 0

  pruned_dir = tmp_path / "pruned"
  config = tiny_config(stage="prune", teacher_checkpoint=str(teacher_dir),
                       init_checkpoint=str(student_dir / "model"),
                       **{"prune.target": 0.5, "prune.warmup_steps": 2,
                          "prune.freeze_step": 2}, **STAGE)
  state = train_lib.train_and_evaluate(config, pruned_dir, CountingIterator())
  rows = metrics(pruned_dir)
  assert [r["target_sparsity"] for r in rows] == pytest.approx([0.0, 0.25,
                                                                 0.5])
  assert all(0.0 <= r["expected_sparsity"] < 1.0 for r in rows)
  # Gradient ascent: lambda1 moves with the sign of (sparsity - target)
  # (each row reports the lambdas its step started from).
  for before, after in zip(rows, rows[1:]):
    gap = before["expected_sparsity"] - before["target_sparsity"]
    assert np.sign(after["lambda1"] - before["lambda1"]) == np.sign(gap)
  gate_state = gates_lib.load_gate_state(pruned_dir / train_lib.GATES_DIR)
  log_alpha = gate_state["log_alpha"]["vilt"]
  assert log_alpha["heads"].shape == (2, 4)
  assert log_alpha["units"].shape == (2, 64)
  np.testing.assert_array_equal(
      log_alpha["heads"],
      np.asarray(state.params["hard_concrete"]["log_alpha"]["vilt"]["heads"]))
  pruned, variables = checkpoint.load_model(pruned_dir / "model")
  assert "hard_concrete" not in variables["params"]


def test_stage_errors(teacher_dir, tmp_path):
  odd = tmp_path / "odd"
  model, params = init_model(tiny_config())  # 3 layers
  checkpoint.save_model(odd, model.config, params)
  cases = [
      (dict(stage="distill"), "teacher_checkpoint=DIR"),
      (dict(stage="distill", teacher_checkpoint=str(odd)), "does not halve"),
      (dict(stage="distill", teacher_checkpoint=str(teacher_dir),
            arch="meter"), "holds a vilt model"),
      (dict(stage="prune", teacher_checkpoint=str(teacher_dir),
            init_checkpoint=str(teacher_dir), **{"prune.target": 1.0}),
       r"prune.target=1.0 must be in \[0, 1\)"),
  ]
  for i, (overrides, message) in enumerate(cases):
    with pytest.raises(ValueError, match=message):
      train_lib.train_and_evaluate(tiny_config(**overrides),
                                   tmp_path / f"run{i}", CountingIterator())


def test_efficientvlm_config_variants():
  import importlib.util
  import pathlib
  path = pathlib.Path(__file__).parent.parent / "configs" / "efficientvlm.py"
  spec = importlib.util.spec_from_file_location("efficientvlm", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for arg in ("model=vilt,stage=distill", "model=meter,stage=prune",
              "model=vilt,stage=prune,runlocal"):
    c = module.get_config(arg)
    assert c.arch == arg.split(",")[0].split("=")[1]
    assert c.stage == arg.split(",")[1].split("=")[1]
  with pytest.raises(ValueError, match="stage="):
    module.get_config("stage=finalize")
