"""EfficientVLM stage 3: slicing equals masking, down to empty layers."""

import functools
import json
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax.models import saved
from pumer_jax.compress import finalize
from pumer_jax.compress import gates as gates_lib
from pumer_jax.models import Meter, MeterConfig, ReduceConfig, Vilt, ViltConfig
from pumer_jax.models import meter as meter_lib
from pumer_jax.models import vilt as vilt_lib

VILT = ViltConfig(vocab_size=30, hidden_size=16, num_hidden_layers=3,
                  num_attention_heads=4, intermediate_size=8,
                  max_position_embeddings=8, image_size=32, patch_size=8,
                  num_labels=3)
METER = MeterConfig(
    vision_hidden_size=12, vision_num_layers=2, vision_num_heads=3,
    vision_intermediate_size=8, image_size=32, patch_size=8, vocab_size=30,
    text_hidden_size=8, text_num_layers=1, text_num_heads=2,
    text_intermediate_size=6, max_position_embeddings=12, hidden_size=16,
    num_fusion_layers=2, num_attention_heads=4, intermediate_size=8,
    num_labels=3)
LOW, HIGH = math.log(0.01), math.log(100.0)


def setup(config, module, lib, seed=0):
  inputs = lib.example_inputs(config, 3, 6)
  rng = np.random.default_rng(seed)
  inputs["pixel_values"] = rng.normal(
      size=inputs["pixel_values"].shape).astype(np.float32)
  inputs["input_ids"] = rng.integers(1, 29, (3, 6)).astype(np.int32)
  inputs["attention_mask"][2, 4:] = 0
  variables = jax.jit(module(config).init)(jax.random.PRNGKey(seed), **inputs)
  params = flax.linen.meta.unbox(variables)["params"]
  layout = gates_lib.GateLayout.build(config, params)
  # Random log_alpha, then one layer with no heads and one with no units.
  log_alpha = jax.tree.map(
      lambda a: jnp.asarray(rng.uniform(LOW, HIGH, a.shape), jnp.float32),
      layout.init_log_alpha())
  first = layout.groups[0].module
  log_alpha[first]["heads"] = log_alpha[first]["heads"].at[0].set(LOW)
  log_alpha[first]["units"] = log_alpha[first]["units"].at[1].set(LOW)
  log_alpha[first]["units"] = log_alpha[first]["units"].at[0].set(HIGH)
  return inputs, params, layout, log_alpha


@pytest.mark.parametrize("config,module,lib", [
    (VILT, Vilt, vilt_lib), (METER, Meter, meter_lib)])
def test_sliced_model_equals_the_masked_model(config, module, lib):
  inputs, params, layout, log_alpha = setup(config, module, lib)
  masks = gates_lib.deterministic_gates(log_alpha)
  first = layout.groups[0].module
  assert float(masks[first]["heads"][0].sum()) == 0  # an empty attention
  assert float(masks[first]["units"][1].sum()) == 0  # an empty FFN
  sliced_config, sliced = finalize.slice_params(config, params, masks)
  masked = jax.jit(functools.partial(module(config).apply))(
      {"params": params}, **inputs, gates=masks)
  small = jax.jit(functools.partial(module(sliced_config).apply))(
      {"params": sliced}, **inputs)
  np.testing.assert_allclose(small["logits"], masked["logits"], atol=1e-5)
  # The empty layers keep only their output biases.
  attn = gates_lib.module_at(sliced, layout.groups[0].paths[0])
  assert jax.tree.structure(attn) == jax.tree.structure(
      {"out": {"bias": 0}})
  mlp = gates_lib.module_at(sliced, layout.groups[1].paths[1])
  assert jax.tree.structure(mlp) == jax.tree.structure({"fc2": {"bias": 0}})
  # Fewer parameters, exactly the masked-off ones.
  report = finalize.pruning_report(sliced_config, params, sliced, layout,
                                   masks, log_alpha)
  removed = report["prunable_before"] - report["prunable_after"]
  assert report["parameters_before"] - report["parameters_after"] == removed
  assert 0 < report["prunable_sparsity"] < 1


def test_sliced_model_takes_token_reducers():
  inputs, params, layout, log_alpha = setup(VILT, Vilt, vilt_lib)
  masks = gates_lib.deterministic_gates(log_alpha)
  sliced_config, sliced = finalize.slice_params(VILT, params, masks)
  pumer = sliced_config.replace(reduce=ReduceConfig(
      method="pumer", layers=(1,), prune_ratio=0.2, image_merge_ratio=0.2,
      text_merge_ratio=0.2))
  out = jax.jit(functools.partial(Vilt(pumer).apply))(
      {"params": sliced}, **inputs)
  assert np.isfinite(np.asarray(out["logits"])).all()
  assert out["tokens"][-1] < out["tokens"][0]


def test_finalize_cli_round_trip(tmp_path):
  inputs, params, layout, log_alpha = setup(VILT, Vilt, vilt_lib)
  run = tmp_path / "run"
  saved.save_model(run / "model", VILT, params)
  with pytest.raises(FileNotFoundError, match="has no gates"):
    finalize.main(["--workdir", str(run), "--out", str(tmp_path / "x")])
  gates_lib.save_gate_state(run / finalize.GATES_DIR,
                            {"log_alpha": log_alpha, "lambdas": jnp.zeros(2)})
  out = tmp_path / "small"
  finalize.main(["--workdir", str(run), "--out", str(out)])
  model, variables = saved.load_model(out)
  assert model.config.pruned_sizes[0][:2] == ("vilt", "heads")
  report = json.loads((out / finalize.REPORT_FILE).read_text())
  assert set(report["modality_split"]) == {"fusion"}
  assert len(report["layers"]) == 2 * VILT.num_hidden_layers
  masks = gates_lib.deterministic_gates(log_alpha)
  want = jax.jit(Vilt(VILT).apply)({"params": params}, **inputs, gates=masks)
  got = jax.jit(model.apply)(variables, **inputs)
  np.testing.assert_allclose(got["logits"], want["logits"], atol=1e-5)
  with pytest.raises(FileExistsError):
    finalize.main(["--workdir", str(run), "--out", str(out)])
