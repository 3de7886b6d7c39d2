"""End-to-end training: learning, resume, checkpoints, distillation, mesh."""

import itertools
import json
import os
import pathlib
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

from pumer_jax.models import saved
from pumer_jax.train import finetune, optim, sharding
from pumer_jax.train.state import TrainState
from pumer_jax.train.step import make_train_step
from train_fixtures import (CountingIterator, fixed_batches, init_model,
                            random_batch, tiny_config)


def read_metrics(workdir):
  lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines]


def params_of(state):
  return jax.tree_util.tree_map(np.asarray, jax.device_get(state.params))


def assert_same_params(a, b):
  flat_a = flax.traverse_util.flatten_dict(a)
  flat_b = flax.traverse_util.flatten_dict(b)
  assert flat_a.keys() == flat_b.keys()
  for key in flat_a:
    np.testing.assert_allclose(flat_a[key], flat_b[key], rtol=0, atol=1e-6,
                               err_msg="/".join(key))


@pytest.mark.slow
def test_loss_goes_down_on_a_fixed_batch(tmp_path):
  config = tiny_config(total_steps=8)
  finetune.train_and_evaluate(config, tmp_path, train_iter=fixed_batches())
  losses = [m["loss"] for m in read_metrics(tmp_path)]
  assert len(losses) == 8 and losses[-1] < 0.7 * losses[0]
  assert (tmp_path / "tensorboard").is_dir()
  with pytest.raises(FileExistsError, match="different run"):
    finetune.train_and_evaluate(tiny_config(seed=1), tmp_path,
                                 train_iter=fixed_batches())


def test_checkpoints_without_their_config_are_not_resumed(tmp_path):
  """A workdir moved away while its run was still saving leaves checkpoints
  and no config.json behind: a new run must not resume from them."""
  from pumer_jax.train import checkpoints
  (tmp_path / "checkpoints" / "3372").mkdir(parents=True)
  with pytest.raises(FileExistsError, match="no config.json"):
    checkpoints.claim_workdir(tmp_path, tiny_config())
  assert not (tmp_path / "config.json").exists()


def test_a_key_added_since_the_run_started_does_not_block_its_resume(tmp_path):
  """A run saved before a config key existed resumes while the key keeps its
  default; set to anything else, it is another run."""
  import json
  from pumer_jax.train import checkpoints
  config = tiny_config()
  checkpoints.claim_workdir(tmp_path, config)
  saved = json.loads((tmp_path / "config.json").read_text())
  del saved["loss"]["grounding_weight"], saved["data"]["prepare_processes"]
  (tmp_path / "config.json").write_text(json.dumps(saved))
  checkpoints.claim_workdir(tmp_path, tiny_config())  # the defaults: resumes
  (tmp_path / "config.json").write_text(json.dumps(saved))
  with pytest.raises(FileExistsError, match=r"differs in \['loss'\]"):
    checkpoints.claim_workdir(tmp_path, tiny_config(**{"loss.grounding_weight": 0.5}))


class InterruptAfter(CountingIterator):
  """Raises KeyboardInterrupt (Ctrl-C) when asked for batch `limit`."""

  def __init__(self, limit):
    super().__init__()
    self.limit = limit

  def __next__(self):
    if self.position == self.limit:
      raise KeyboardInterrupt
    return super().__next__()


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_parameters(tmp_path):
  config = tiny_config()
  straight = finetune.train_and_evaluate(config, tmp_path / "a",
                                          train_iter=CountingIterator())
  with pytest.raises(KeyboardInterrupt):
    finetune.train_and_evaluate(config, tmp_path / "b",
                                 train_iter=InterruptAfter(4))
  steps = sorted(int(p.name) for p in (tmp_path / "b/checkpoints").iterdir()
                 if p.name.isdigit())
  assert steps == [3, 4]  # the periodic save and the one at Ctrl-C
  resumed = finetune.train_and_evaluate(config, tmp_path / "b",
                                         train_iter=CountingIterator())
  assert int(resumed.step) == 6
  assert_same_params(params_of(resumed), params_of(straight))

  # A corrupt latest checkpoint: fall back to the one before, retrain.
  latest = tmp_path / "b/checkpoints/6"
  for f in latest.rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  again = finetune.train_and_evaluate(config, tmp_path / "b",
                                      train_iter=CountingIterator())
  assert_same_params(params_of(again), params_of(straight))
  # The corrupt files are kept aside, not deleted; step 6 is saved anew.
  assert (tmp_path / "b/corrupt_checkpoints/6").is_dir()
  assert (tmp_path / "b/checkpoints/6").is_dir()


def test_stop_at_ends_the_run_early(tmp_path):
  state = finetune.train_and_evaluate(tiny_config(stop_at=3), tmp_path / "a",
                                      train_iter=CountingIterator())
  assert int(state.step) == 3
  assert (tmp_path / "a/model").is_dir()
  with pytest.raises(ValueError, match="stop_at"):
    finetune.train_and_evaluate(tiny_config(stop_at=7), tmp_path / "b",
                                train_iter=CountingIterator())


def test_nan_loss_stops_with_the_step(tmp_path):
  def poisoned():
    step = 0
    while True:
      batch = random_batch(step)
      if step == 2:
        batch["pixel_values"][:] = np.nan
      step += 1
      yield batch

  with pytest.raises(FloatingPointError, match="at step 3"):
    finetune.train_and_evaluate(tiny_config(), tmp_path,
                                 train_iter=poisoned())


@pytest.mark.slow
def test_distillation_loss_is_zero_when_student_is_teacher(tmp_path):
  config = tiny_config()
  model, params = init_model(config)
  model_config = model.config
  tx = optim.make_optimizer(config.optim, 10, params)
  state = TrainState(jnp.zeros((), jnp.int32), params,
                     tx.init(params), jax.random.PRNGKey(1))
  step = jax.jit(make_train_step(
      finetune.make_loss_fn(model, config, teacher=model), tx))
  _, metrics = step(state, random_batch(0), params)
  assert float(metrics["kd_logits"]) == pytest.approx(0.0, abs=1e-7)
  assert float(metrics["loss"]) == pytest.approx(float(metrics["task_loss"]))

  # Through the loop: a saved teacher with peaked logits (its output layer
  # scaled up), and PuMer students with and without init_from it.
  peaked = jax.tree_util.tree_map(lambda a: a, params)
  peaked["classifier"]["out"]["kernel"] = params["classifier"]["out"][
      "kernel"] * 200.0
  saved.save_model(tmp_path / "teacher", model_config, peaked)
  first_kd = {}
  for name, init_from in (("fresh", ""), ("init", str(tmp_path / "teacher"))):
    student = tiny_config(**{
        "distill.teacher": str(tmp_path / "teacher"), "init_from": init_from,
        "reduce.method": "pumer", "reduce.layers": (1,),
        "reduce.prune_ratio": 0.3, "reduce.image_merge_ratio": 0.2,
        "total_steps": 2, "seed": 1})
    finetune.train_and_evaluate(student, tmp_path / name,
                                 train_iter=fixed_batches())
    first_kd[name] = read_metrics(tmp_path / name)[0]["kd_logits"]
  # Starting from the teacher's weights, the reduced student is far closer.
  assert first_kd["fresh"] > 0.05
  assert abs(first_kd["init"]) < first_kd["fresh"] / 10


@pytest.mark.slow
def test_dynamicvit_trains_its_predictors(tmp_path):
  config = tiny_config(**{"reduce.method": "dynamicvit", "reduce.layers": (1,),
                          "reduce.keep_ratios": (0.5,), "total_steps": 3})
  state = finetune.train_and_evaluate(config, tmp_path,
                                       train_iter=fixed_batches())
  assert "keep_predictor_0" in state.params["vilt"]
  assert all("ratio_loss" in m for m in read_metrics(tmp_path))


EIGHT_DEVICES = r"""
import sys
sys.path.insert(0, sys.argv[1])
import jax, numpy as np
from jax.sharding import Mesh
from pumer_jax.train import finetune, optim, sharding
from pumer_jax.train.state import init_sharded_state
from pumer_jax.train.step import jit_train_step, make_train_step
from train_fixtures import tiny_config, random_batch
import flax.linen as nn

assert jax.device_count() == 8
config = tiny_config()
model, model_config, example = finetune.build_model(config)
abstract = nn.meta.unbox(jax.eval_shape(
    lambda: model.init(jax.random.PRNGKey(0), **example))["params"])
tx = optim.make_optimizer(config.optim, 10, abstract)
losses = {}
for name, mesh in (("4x2", sharding.make_mesh(4, 2)),
                   ("1", Mesh(np.array(jax.devices()[:1]).reshape(1, 1),
                              ("data", "model")))):
  state, shardings = init_sharded_state(
      model, tx, example, jax.random.PRNGKey(0), mesh)
  if name == "4x2":
    kernel = state.params["vilt"]["layer_0"]["mlp"]["fc1"]["kernel"]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "model")
  step = jit_train_step(
      make_train_step(finetune.make_loss_fn(model, config), tx), shardings, mesh)
  out = []
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    for i in range(2):
      state, metrics = step(state, sharding.put_batch(random_batch(i), mesh),
                            None)
      out.append(float(metrics["loss"]))
  losses[name] = out
print(losses)
np.testing.assert_allclose(losses["4x2"], losses["1"], rtol=1e-5)
"""


@pytest.mark.slow
def test_eight_device_mesh_matches_one_device():
  env = dict(os.environ,
             XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  tests_dir = str(pathlib.Path(__file__).parent)
  result = subprocess.run([sys.executable, "-c", EIGHT_DEVICES, tests_dir],
                          env=env, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]


def test_mesh_errors_name_the_fix():
  with pytest.raises(ValueError, match="mesh.data"):
    sharding.make_mesh(3, 1)


def test_debug_checks_stop_a_bad_batch_inside_jit(tmp_path):
  """With debug_checks, the jitted step checks values (checkify) and names
  the example; without, the id past the table turns into NaN and only the
  NaN guard stops the run, a step later and without naming the cause."""
  batch = random_batch(0)
  batch["input_ids"][3, 2] = 30  # vocab_size is 30
  with pytest.raises(checkify.JaxRuntimeError, match="example 3: a token id"):
    finetune.train_and_evaluate(tiny_config(debug_checks=True, total_steps=2),
                                tmp_path / "checked",
                                train_iter=itertools.repeat(batch))
  with pytest.raises(FloatingPointError, match="loss is nan"):
    finetune.train_and_evaluate(tiny_config(total_steps=2),
                                tmp_path / "free",
                                train_iter=itertools.repeat(batch))


def test_each_trainer_refuses_the_others_config(tmp_path):
  with pytest.raises(ValueError, match="EfficientVLM stage"):
    finetune.train_and_evaluate(tiny_config(stage="distill"), tmp_path,
                                train_iter=fixed_batches())
  with pytest.raises(ValueError, match="distill.attn is EfficientVLM"):
    finetune.make_loss_fn(init_model(tiny_config())[0],
                          tiny_config(**{"distill.attn": 1.0}))
