"""EfficientVLM's gates: parameters per gate, masking, the Lagrangian."""


import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pumer_jax.compress import gates as gates_lib
from pumer_jax.models import Meter, MeterConfig, Vilt, ViltConfig
from pumer_jax.models import meter as meter_lib
from pumer_jax.models import vilt as vilt_lib

VILT = ViltConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2,
                  num_attention_heads=2, intermediate_size=24,
                  max_position_embeddings=8, image_size=32, patch_size=16,
                  num_labels=3)
METER = MeterConfig(
    vision_hidden_size=12, vision_num_layers=1, vision_num_heads=3,
    vision_intermediate_size=20, image_size=32, patch_size=16, vocab_size=30,
    text_hidden_size=8, text_num_layers=1, text_num_heads=2,
    text_intermediate_size=10, max_position_embeddings=12, hidden_size=16,
    num_fusion_layers=1, num_attention_heads=2, intermediate_size=24,
    num_labels=3)


def init(config, module, lib):
  inputs = lib.example_inputs(config, 2, 6)
  inputs["pixel_values"] = np.random.default_rng(0).normal(
      size=inputs["pixel_values"].shape).astype(np.float32)
  inputs["input_ids"] = np.arange(12).reshape(2, 6) % 29 + 1
  params = jax.jit(module(config).init)(jax.random.PRNGKey(0), **inputs)
  return module(config), flax.linen.meta.unbox(params)["params"], inputs


def test_params_per_gate_by_hand():
  _, params, _ = init(VILT, Vilt, vilt_lib)
  layout = gates_lib.GateLayout.build(VILT, params)
  d, dh, f = 16, 8, 24
  heads, units = layout.per_gate
  assert heads == (4 * d * dh + 3 * dh,) * 2  # q/k/v columns + biases, out rows
  assert units == (2 * d + 1,) * 2  # fc1 column + bias, fc2 row
  assert layout.prunable_size() == 2 * (2 * heads[0] + f * units[0])
  _, params, _ = init(METER, Meter, meter_lib)
  layout = gates_lib.GateLayout.build(METER, params)
  per = {(g.module, g.kind): c[0] for g, c in zip(layout.groups,
                                                  layout.per_gate)}
  assert per[("vision", "heads")] == 4 * 12 * 4 + 3 * 4
  assert per[("text", "units")] == 2 * 8 + 1
  # Cross-attention keys/values read the other stream (also width 16 here).
  assert per[("fusion_image", "cross_heads")] == 4 * 16 * 8 + 3 * 8
  assert set(gates_lib.MODALITY[g.module] for g in layout.groups) == {
      "vision", "text", "fusion"}


@pytest.mark.parametrize("config,module,lib", [
    (VILT, Vilt, vilt_lib), (METER, Meter, meter_lib)])
def test_gates_scale_heads_and_units(config, module, lib):
  model, params, inputs = init(config, module, lib)
  layout = gates_lib.GateLayout.build(config, params)
  ones = jax.tree.map(jnp.ones_like, layout.init_log_alpha())
  apply = jax.jit(model.apply)
  plain = apply({"params": params}, **inputs)["logits"]
  gated = apply({"params": params}, **inputs, gates=ones)["logits"]
  np.testing.assert_allclose(gated, plain, atol=1e-6)
  # A zero gate equals zeroing what it controls: a unit's fc2 row, a head's
  # rows of the output projection.
  group = layout.groups[1]  # units of the first module
  zeroed = {m: dict(kinds) for m, kinds in ones.items()}
  zeroed[group.module]["units"] = ones[group.module]["units"].at[0, 3].set(0)
  head_group = layout.groups[0]
  zeroed[head_group.module]["heads"] = ones[head_group.module][
      "heads"].at[0, 1].set(0)
  flat = flax.traverse_util.flatten_dict(params)
  fc2 = group.paths[0] + ("fc2", "kernel")
  flat[fc2] = flat[fc2].at[3].set(0)
  out = head_group.paths[0] + ("out", "kernel")
  dh = flat[out].shape[0] // head_group.size
  flat[out] = flat[out].at[dh:2 * dh].set(0)
  edited = flax.traverse_util.unflatten_dict(flat)
  np.testing.assert_allclose(
      apply({"params": params}, **inputs, gates=zeroed)["logits"],
      apply({"params": edited}, **inputs)["logits"], atol=1e-6)


def test_lambdas_ascend_and_a_toy_run_reaches_its_target():
  _, params, _ = init(VILT, Vilt, vilt_lib)
  layout = gates_lib.GateLayout.build(VILT, params)
  state = {"log_alpha": layout.init_log_alpha(), "lambdas": jnp.zeros(2)}
  tx = gates_lib.gate_optimizer(0.05)
  opt = tx.init(state)
  target = 0.5

  def loss(s, step):
    t = gates_lib.target_at(step, target, 100)
    return gates_lib.lagrangian(layout.expected_sparsity(s["log_alpha"]), t,
                                s["lambdas"])

  @jax.jit
  def step(s, opt, i):
    grads = jax.grad(loss)(s, i)
    updates, opt = tx.update(grads, opt, s)
    s = optax.apply_updates(s, updates)
    s["log_alpha"] = jax.tree.map(gates_lib.hard_concrete.clip_log_alpha,
                                  s["log_alpha"])
    return s, opt

  # At the start the sparsity is below the target: s - t < 0, so ascent on
  # lambda1 (d loss / d lambda1 = s - t) lowers it.
  s1, _ = step(state, opt, 50)
  assert float(s1["lambdas"][0]) < 0
  for i in range(600):
    state, opt = step(state, opt, i)
  sparsity = float(layout.expected_sparsity(state["log_alpha"]))
  assert abs(sparsity - target) < 0.02, sparsity


def test_target_ramp_and_bad_target():
  assert float(gates_lib.target_at(0, 0.5, 100)) == 0.0
  assert float(gates_lib.target_at(50, 0.5, 100)) == pytest.approx(0.25)
  assert float(gates_lib.target_at(500, 0.5, 100)) == pytest.approx(0.5)
  for bad in (1.0, -0.1):
    with pytest.raises(ValueError, match=r"prune.target"):
      gates_lib.target_at(0, bad, 100)
