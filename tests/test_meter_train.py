"""METER's configs train end to end: in-process on task-shaped batches, and
through train.py on the embedded shapes_vqa dataset."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from pumer_jax.models import saved
from pumer_jax.train import finetune
from pumer_jax.models import Meter

ROOT = pathlib.Path(__file__).parent.parent


def load_config(name, arg):
  spec = importlib.util.spec_from_file_location(
      name, ROOT / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def task_batches(config, seed=0):
  """Endless random batches in the shapes the config's task reads."""
  rng = np.random.default_rng(seed)
  b, length = config.batch_size, config.data.text_len
  h, w = config.model.input_size
  images = (2,) if config.task == "nlvr2" else ()
  while True:
    mask = np.ones((b, length), np.int32)
    mask[::2, length // 2:] = 0
    batch = dict(
        input_ids=rng.integers(3, config.model.vocab_size, (b, length)),
        attention_mask=mask,
        pixel_values=rng.normal(size=(b,) + images + (h, w, 3)),
        valid=np.ones((b,), bool))
    if config.task in ("ve", "nlvr2"):
      batch["label"] = rng.integers(0, config.model.num_labels, (b,))
    yield {k: np.asarray(v, np.float32 if k == "pixel_values" else None)
           for k, v in batch.items()}


def test_meter_ve_config_builds_its_model():
  """SNLI-VE trains as VQA does (one image, a classifier): the shapes run
  below covers that path; here, the config's model and reducers."""
  import jax
  config = load_config("meter_ve", "method=pumer,runlocal")
  model, model_config, example = finetune.build_model(config)
  out, _ = jax.eval_shape(model.init_with_output, jax.random.PRNGKey(0),
                          **example)
  assert out["logits"].shape == (1, 3)
  assert model_config.reduce.method == "pumer"
  full = load_config("meter_ve", "method=pumer")
  reduce = finetune.build_model_config(full).reduce
  assert reduce.clamp_merge and reduce.layers == (0, 1, 2, 3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["meter_nlvr2", "meter_retrieval"])
def test_meter_configs_train_a_few_steps(tmp_path, name):
  config = load_config(name, "method=pumer,runlocal")
  config.unlock()
  config.progress = False
  config.lock()
  state = finetune.train_and_evaluate(config, tmp_path,
                                       train_iter=task_batches(config))
  assert int(state.step) == config.total_steps
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert all(np.isfinite(json.loads(line)["loss"]) for line in lines)
  model, _ = saved.load_model(tmp_path / "model")
  assert isinstance(model, Meter)
  assert model.config.reduce.method == "pumer"
  assert model.config.head == config.model.head


@pytest.mark.slow
def test_meter_vqa_trains_on_shapes_through_train_py(tmp_path):
  """The real entry point on the embedded dataset, then eval.py with PuMer.

  Trained unreduced: training through PuMer is covered above (nlvr2,
  retrieval) and in test_meter_reducers; here the entry points are."""
  workdir = tmp_path / "run"
  data_dir = tmp_path / "data"
  common = [f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
            "--config.progress=False"]
  subprocess.run(
      [sys.executable, "train.py",
       "--config=configs/meter_vqa.py:shapes", *common],
      cwd=ROOT, check=True, timeout=600)
  model, _ = saved.load_model(workdir / "model")
  assert isinstance(model, Meter)
  subprocess.run(
      [sys.executable, "eval.py", "--config=configs/meter_vqa.py:shapes",
       *common, "--config.eval.methods=none,pumer",
       "--config.eval.timing_min_seconds=0"],
      cwd=ROOT, check=True, timeout=600)
  results = json.loads((workdir / "eval_test.json").read_text())
  assert {r["method"] for r in results["results"]} == {"none", "pumer"}
  pumer = next(r for r in results["results"] if r["method"] == "pumer")
  assert pumer["flop_ratio"] < 1.0


@pytest.mark.parametrize("name, arg, match", [
    ("meter_vqa", "pretrain", "meter_vqa.py:shapes,pretrain"),
    ("meter_ve", "shapes", "VQA only"),
    ("meter_vqa", "shapes,pretrain,run=4",
     r"run=4 must be one of the recipe's runs: 1 \(the general run\)"),
    ("vilt_shapes", "pretrain,run=3",
     r"run=3 must be one of the recipe's runs: 1 \(the position"),
    ("vilt_shapes", "method=pumr",
     r"config variant method='pumr' is not one of \['dynamicvit', 'evit', 'none'"),
    ("vilt_shapes", "lab=grid9,pretrain",
     r"lab='grid9' must be one of \['grid12', 'grid4'\]"),
    ("vilt_shapes", "lab=grid12", "add `pretrain`"),
    ("vilt_shapes", "lab=grid12,pretrain,run=4",
     r"run=4 must be one of the recipe's runs: 1 \(the general run\), 2 "
     r"\(the position curriculum\), 3"),
    ("efficientvlm", "stage=run", "stage='run' is not one of"),
])
def test_shapes_variants_name_their_fix(name, arg, match):
  with pytest.raises(ValueError, match=match):
    load_config(name, arg)


def test_grid12_recipe_chains_its_runs():
  # METER's order: general run, position curriculum (no patch term), final
  # mixed run; each run starts from the one before, the last is the default.
  first, curriculum, final = (load_config("vilt_shapes", f"lab=grid12,pretrain,run={r}")
                              for r in (1, 2, 3))
  assert first.init_from == "" and first.loss.patch_weight > 0
  assert first.model.patch_stem == "conv"
  assert curriculum.init_from == "runs/shapes_grid12_s1/model"
  assert curriculum.loss.patch_weight == 0.0
  assert curriculum.data.builder_config["max_objects"] == 1
  assert final.init_from == "runs/shapes_grid12_s2/model"
  assert final.loss.patch_weight > 0
  default = load_config("vilt_shapes", "lab=grid12,pretrain")
  assert default.to_dict() == final.to_dict()
