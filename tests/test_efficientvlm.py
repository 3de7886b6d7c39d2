"""EfficientVLM end to end on a tiny ViLT: distill, then prune, in-process."""

import json

import numpy as np
import pytest

from pumer_jax.compress.finalize import GATES_DIR
from pumer_jax.models import saved
from pumer_jax.train import efficientvlm
from pumer_jax.compress import gates as gates_lib
from pumer_jax.models import Vilt
from train_fixtures import (CountingIterator, init_model, tiny_config,
                            with_overrides)

# EfficientVLM's KD: every term on (configs/efficientvlm.py sets the same).
STAGE = {"total_steps": 3, "checkpoint_every": 10, "distill.attn": 1.0,
         "distill.hidden": 1.0}


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
  config = tiny_config(**{"model.num_hidden_layers": 4})
  model, params = init_model(config)
  directory = tmp_path_factory.mktemp("teacher") / "model"
  saved.save_model(directory, model.config, params)
  return directory


def metrics(workdir):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines]


@pytest.mark.slow
def test_distill_then_prune(teacher_dir, tmp_path):
  student_dir = tmp_path / "student"
  config = tiny_config(stage="distill", **{"distill.teacher": str(teacher_dir)},
                       **STAGE)
  efficientvlm.train_and_evaluate(config, student_dir, CountingIterator())
  student, _ = saved.load_model(student_dir / "model")
  assert isinstance(student, Vilt)
  assert student.config.num_hidden_layers == 2
  last = metrics(student_dir)[-1]
  for key in ("kd_logits", "kd_attn", "kd_hidden", "task_loss"):
    assert np.isfinite(last[key]), key
  assert last["kd_attn"] > 0 and last["kd_hidden"] > 0

  pruned_dir = tmp_path / "pruned"
  config = tiny_config(stage="prune", init_from=str(student_dir / "model"),
                       **{"distill.teacher": str(teacher_dir),
                          "prune.target": 0.5, "prune.warmup_steps": 2,
                          "prune.freeze_step": 2}, **STAGE)
  state = efficientvlm.train_and_evaluate(config, pruned_dir, CountingIterator())
  rows = metrics(pruned_dir)
  assert [r["target_sparsity"] for r in rows] == pytest.approx([0.0, 0.25,
                                                                 0.5])
  assert all(0.0 <= r["expected_sparsity"] < 1.0 for r in rows)
  # Gradient ascent: lambda1 moves with the sign of (sparsity - target)
  # (each row reports the lambdas its step started from).
  for before, after in zip(rows, rows[1:]):
    gap = before["expected_sparsity"] - before["target_sparsity"]
    assert np.sign(after["lambda1"] - before["lambda1"]) == np.sign(gap)
  gate_state = gates_lib.load_gate_state(pruned_dir / GATES_DIR)
  log_alpha = gate_state["log_alpha"]["vilt"]
  assert log_alpha["heads"].shape == (2, 4)
  assert log_alpha["units"].shape == (2, 64)
  np.testing.assert_array_equal(
      log_alpha["heads"],
      np.asarray(state.gates["log_alpha"]["vilt"]["heads"]))
  pruned, variables = saved.load_model(pruned_dir / "model")
  assert "hard_concrete" not in variables["params"]


def test_stage_errors(teacher_dir, tmp_path):
  odd = tmp_path / "odd"
  model, params = init_model(tiny_config())  # 3 layers
  saved.save_model(odd, model.config, params)
  cases = [
      (dict(stage="distill"), "distill.teacher=DIR"),
      (dict(stage="distill", **{"distill.teacher": str(odd)}),
       "does not halve"),
      (dict(stage="distill", arch="meter",
            **{"distill.teacher": str(teacher_dir)}), "holds a vilt model"),
      (dict(stage="prune", **{"distill.teacher": str(teacher_dir)}),
       "init_from=DIR"),
      (dict(stage="prune", init_from=str(teacher_dir),
            **{"distill.teacher": str(teacher_dir), "prune.target": 1.0}),
       r"prune.target=1.0 must be in \[0, 1\)"),
      (dict(stage="", **{"distill.teacher": str(teacher_dir)}),
       "runs stage distill or prune"),
  ]
  for i, (overrides, message) in enumerate(cases):
    with pytest.raises(ValueError, match=message):
      efficientvlm.train_and_evaluate(tiny_config(**overrides),
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


def meter_config(**overrides):
  """A tiny METER run on CountingIterator's batches (32x32, text 8)."""
  from pumer_jax.configs.base import base_config
  c = base_config("meter")
  c.model.update(dict(
      vision_hidden_size=16, vision_num_layers=2, vision_num_heads=2,
      vision_intermediate_size=24, image_size=32, patch_size=16,
      vocab_size=30, text_hidden_size=16, text_num_layers=2,
      text_num_heads=2, text_intermediate_size=24, max_position_embeddings=12,
      hidden_size=16, num_fusion_layers=2, num_attention_heads=2,
      intermediate_size=24, num_labels=5, input_size=(32, 32)))
  c.data.text_len = 8
  c.batch_size = 8
  c.log_every = 1
  c.progress = False
  c.optim.warmup_steps = 1
  c.unlock()
  return with_overrides(c, {**STAGE, **overrides})


@pytest.mark.slow
def test_meter_prune_with_per_module_kd(tmp_path):
  """METER: gates on every module, KD per module from the full teacher.

  The student is built by `init_student` (test_distill checks it); the
  distill stage's loss is the prune stage's without the Lagrangian.
  """
  from pumer_jax.compress import distill
  config = meter_config()
  model, params = init_model(config)
  teacher = tmp_path / "teacher"
  saved.save_model(teacher, model.config, params)
  student = tmp_path / "student"
  saved.save_model(student, distill.student_config(model.config),
                        distill.init_student(model.config, params))
  efficientvlm.train_and_evaluate(
      meter_config(stage="prune", init_from=str(student),
                   **{"distill.teacher": str(teacher)}),
      tmp_path / "pruned", CountingIterator())
  state = gates_lib.load_gate_state(tmp_path / "pruned" / GATES_DIR)
  assert set(state["log_alpha"]) == {"vision", "text", "fusion_text",
                                     "fusion_image"}
  assert set(state["log_alpha"]["fusion_image"]) == {"heads", "cross_heads",
                                                     "units"}
  assert state["log_alpha"]["vision"]["heads"].shape == (1, 2)
  rows = metrics(tmp_path / "pruned")
  for r in rows:
    assert r["kd_attn"] > 0 and r["kd_hidden"] > 0
    assert 0.0 <= r["expected_sparsity"] < 1.0
