"""The benchmark's memory protocols, train step and crossover batch.

Nothing here asserts a timing; the memory figures are XLA's compiled
analysis, deterministic for a program.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax.bench import breakdown, phases, presets, programs, protocols, runner
from pumer_jax.bench import report as report_lib
from pumer_jax.models import ReduceConfig

TINY = presets.PRESETS["tiny"].model.replace(num_hidden_layers=2)
PUMER = ReduceConfig(method="pumer", layers=(0,), prune_ratio=0.3,
                     image_merge_ratio=0.3, text_merge_ratio=0.2)
DYNAMICVIT = ReduceConfig(method="dynamicvit", layers=(0,), keep_ratios=(0.5,))
FAST = dict(batch_start=2, batch_step=2, max_batch=2, repeats=1, warmup=1,
            progress=False)


def _specs(batch, text_len=8, hw=64):
  return (jax.ShapeDtypeStruct((batch, text_len), jnp.int32),
          jax.ShapeDtypeStruct((batch, text_len), jnp.int32),
          jax.ShapeDtypeStruct((batch, hw, hw, 3), jnp.float32))


@pytest.fixture(scope="module")
def store():
  return programs.ParamStore(TINY, 8, (64, 64), seed=0)


def test_residuals_are_activations_not_weights(store):
  # Kept tensors scale with the batch; a weight among them would not.
  params = store.get(ReduceConfig())
  kept = {b: protocols.residual_bytes(protocols.compile_autograd_forward(
      TINY, ReduceConfig(), params, _specs(b))) for b in (2, 4, 8)}
  per_example = (kept[4] - kept[2]) / 2
  assert kept[8] - kept[4] == pytest.approx(4 * per_example, rel=0.01)
  weights = sum(a.nbytes for a in jax.tree.leaves(params))
  intercept = kept[2] - 2 * per_example  # what does not scale with the batch
  assert abs(intercept) < 0.02 * weights


def test_a_reduced_model_keeps_less_for_its_backward(store):
  kept = {name: protocols.residual_bytes(protocols.compile_autograd_forward(
      TINY, r, store.get(r), _specs(8)))
          for name, r in (("none", ReduceConfig()), ("pumer", PUMER))}
  assert kept["pumer"] < 0.9 * kept["none"]


def test_train_step_trains_its_own_copy(store):
  params = store.get(DYNAMICVIT)
  compiled, init_opt = protocols.compile_train_step(TINY, DYNAMICVIT, params,
                                                    _specs(2))
  inputs = programs._example_inputs(2, 8, (64, 64), TINY.vocab_size, 0)
  loop = protocols.TrainLoop(compiled, init_opt, params, inputs)
  losses = [float(loop()) for _ in range(3)]
  assert all(np.isfinite(losses))
  # Donation consumed the loop's copy, never the shared weights.
  leaf = jax.tree.leaves(store.get(DYNAMICVIT))[0]
  assert not leaf.is_deleted()
  assert not np.array_equal(jax.tree.leaves(loop._params)[0], leaf)


@pytest.mark.parametrize("curve, want", [
    ({1: 1.0, 2: 2.0, 4: 5.0}, 2),  # slower at 1, faster from 2 on
    ({1: 1.5, 2: 1.0, 4: 5.0}, 4),  # faster at 1 but not at 2: from 4
    ({1: 0.5, 2: 1.0, 4: 3.0}, None),  # never faster
    ({1: 2.0, 2: 3.0, 4: 5.0}, 1),
])
def test_crossover_batch(curve, want):
  base = {1: 1.0, 2: 1.5, 4: 3.0}
  assert phases.crossover_batch(curve, base) == want


def test_report_carries_every_protocol(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
  report = runner.run_benchmark(
      TINY, {"none": ReduceConfig(), "pumer": PUMER}, 8, 64,
      train_step=True, crossover_batches=(1, 2), time_breakdown=True, **FAST)
  assert report["protocols"] == dict(autograd=True, train_step=True,
                                     crossover_batches=[1, 2],
                                     time_breakdown=True)
  none, pumer = report["results"]
  assert none["autograd_memory_reduction"] == 0.0
  assert none["train_speedup"] == 1.0 and none["train_throughput"] > 0
  for r in (none, pumer):
    # The three programs in the order of what they hold.
    assert r["activation_bytes"] < r["autograd_memory_bytes"] < r[
        "train_memory_bytes"]
    assert r["crossover"]["batches"] == [1, 2]
    assert len(r["crossover"]["speedup"]) == 2
  assert none["crossover"]["speedup"] == [1.0, 1.0]
  assert none["crossover"]["baseline"] and not pumer["crossover"]["baseline"]
  assert none["crossover"]["crossover_batch"] is None
  assert pumer["autograd_residual_bytes"] < none["autograd_residual_bytes"]
  # The same reduction layers split by part, unreduced and with PuMer.
  assert [row["layer"] for row in none["time_breakdown"]] == list(PUMER.layers)
  assert [row["layer"] for row in pumer["time_breakdown"]] == list(PUMER.layers)
  for row in pumer["time_breakdown"]:
    assert row["layer_us"] > 0
    assert 0 < row["coverage"] < 1.5  # traced instruction time / wall time
    assert abs(sum(row["shares"].values()) - 1.0) < 1e-6
    assert row["shares"]["reducer score"] > 0
  assert not any(k.startswith("reducer") for row in none["time_breakdown"]
                 for k in row["shares"])
  table = report_lib.format_table(report)
  assert "memory protocols at batch 2" in table and "crossover" in table
  assert "time by part" in table
  # The single-threaded runtime was the child's alone.
  assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false"


def test_protocols_off_leave_their_fields_empty():
  report = runner.run_benchmark(TINY, {"none": ReduceConfig()}, 8, 64,
                                autograd=False, **FAST)
  r = report["results"][0]
  assert r["autograd_memory_bytes"] is None and r["train_throughput"] is None
  assert r["crossover"] is None and r["time_breakdown"] is None
  assert "memory protocols" not in report_lib.format_table(report)


def test_a_bad_crossover_batch_is_named():
  with pytest.raises(ValueError, match=r"crossover_batches\[1\]=0 must be a "
                     "positive int"):
    runner.run_benchmark(TINY, {"none": ReduceConfig()}, 8, 64,
                         crossover_batches=(1, 0), **FAST)


@pytest.mark.parametrize("op_name, want", [
    ("jit(forward)/Vilt/vilt/layer_3.attend/attention/query/dot_general",
     (3, "attention")),
    ("jit(forward)/Vilt/vilt/layer_10.feed_forward/mlp/fc1", (10, "mlp")),
    ("jit(forward)/Vilt/vilt/reducer_2/match/top_k", (2, "reducer match")),
    # The innermost part names the work: a scatter inside a matching.
    ("jit(forward)/Vilt/vilt/reducer_5/match/apply/scatter-add",
     (5, "reducer apply")),
    ("jit(forward)/Vilt/vilt/reducer_5/concatenate", (5, "reducer other")),
    ("jit(forward)/Vilt/vilt/layernorm/reduce_sum", None),
    # METER: both streams' blocks count to their fusion layer.
    ("jit(forward)/Meter/meter/image_layer_2.cross_attend/crossattention/exp",
     (2, "cross-attention")),
    ("jit(forward)/Meter/meter/text_layer_0.self_attend/attention/div",
     (0, "attention")),
    ("jit(forward)/Meter/meter/text_layer_1.feed_forward/mlp/fc1", (1, "mlp")),
    ("jit(forward)/Meter/meter/reducer_0/apply/match/jit(argsort)/sort",
     (0, "reducer match")),
    # The unimodal encoders are not fusion layers.
    ("jit(forward)/Meter/meter/text/layer_0/attention/query/dot_general", None),
    ("jit(forward)/Vilt/classifier/dense", None),
])
def test_time_breakdown_attributes_instructions(op_name, want):
  assert breakdown.attribute(op_name) == want


def test_every_reducer_part_shows_in_a_compiled_model(store):
  # The shared building blocks carry their scopes into XLA's metadata.
  tb = breakdown
  seen = set()
  for reduce in (PUMER, ReduceConfig(method="tome", tome_r=2), DYNAMICVIT):
    compiled = programs.compile_forward(TINY, reduce, store.get(reduce),
                                        _specs(2))
    for op_name in tb.instruction_scopes(compiled.as_text()).values():
      if where := tb.attribute(op_name):
        seen.add(where[1])
  assert {"attention", "mlp", "reducer score", "reducer match",
          "reducer apply"} <= seen
