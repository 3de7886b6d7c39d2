"""The benchmark: end to end on a tiny model, schema, FLOPs, peer, sweep.

Nothing here asserts a timing: CPU timings on a shared machine are noise.
"""

import json

import jax
import numpy as np
import pytest

from pumer_jax.bench import cli, hf_peer, pareto, presets, programs, runner
from pumer_jax.bench import report as report_lib
from pumer_jax.models import ReduceConfig, Vilt, saved

TINY = presets.PRESETS["tiny"].model.replace(num_hidden_layers=2)
# ToMe (PuMer's merge, modality-blind) runs in the bfloat16 CLI test.
METHODS = {
    "none": ReduceConfig(),
    "pumer": ReduceConfig(method="pumer", layers=(0,), prune_ratio=0.2,
                          image_merge_ratio=0.3, text_merge_ratio=0.2),
    "dynamicvit": ReduceConfig(method="dynamicvit", layers=(0,),
                               keep_ratios=(0.5,)),
    "smres": ReduceConfig(method="smres", smres_size=(32, 32)),
}
FAST = dict(batch_start=2, batch_step=2, max_batch=2, repeats=1, warmup=1,
            progress=False)

# Spelled out, not imported: a change to the schema must change this test.
TOP_KEYS = {
    "schema_version", "preset", "created", "versions", "device", "dtype",
    "model", "image_size", "text_len", "batch", "timing", "results", "peer",
    "xla_flags", "protocols",
}
RESULT_KEYS = {
    "name", "method", "reduce", "image_size", "batch", "throughput", "spread",
    "batch_trials", "speedup", "flops_per_example", "flop_ratio",
    "flop_speedup", "efficiency", "peak_memory_bytes", "memory_reduction",
    "memory_estimate_bytes", "memory_estimate_reduction", "activation_bytes",
    "activation_reduction", "tokens_per_layer", "autograd_memory_bytes",
    "autograd_memory_reduction", "autograd_residual_bytes",
    "train_memory_bytes", "train_memory_reduction", "train_throughput",
    "train_spread", "train_speedup", "crossover", "time_breakdown",
}
SPREAD_KEYS = {"throughput_p10", "throughput_p90", "median_s", "p10_s",
               "p90_s", "repeats"}
PEER_KEYS = {"name", "versions", "device", "dtype", "batch", "threads",
             "eager", "compile", "flax_none_over_eager",
             "flax_none_over_compile", "interleaved"}


@pytest.fixture(scope="module")
def report():
  return runner.run_benchmark(TINY, METHODS, text_len=8, image_size=64,
                             peer="hf", peer_compile=False, **FAST)


def by_name(report):
  return {r["name"]: r for r in report["results"]}


def test_schema_is_stable(report):
  assert presets.SCHEMA_VERSION == 3
  assert set(report) == TOP_KEYS == report_lib.SCHEMA_KEYS
  assert set(report["device"]) == {"platform", "kind", "count",
                                   "host_cpu_threads"}
  assert set(report["batch"]) == {"start", "step", "max", "memory",
                                  "activation"}
  assert [r["name"] for r in report["results"]] == list(METHODS)
  for result in report["results"]:
    assert set(result) == RESULT_KEYS == report_lib.RESULT_KEYS
    assert set(result["spread"]) == SPREAD_KEYS
    assert ReduceConfig.from_mapping(result["reduce"]) == METHODS[
        result["name"]]
  assert set(report["peer"]) == PEER_KEYS
  assert json.loads(json.dumps(report)) == report  # plain JSON types only


def test_flops_and_ratios(report):
  results = by_name(report)
  none = results["none"]
  assert none["speedup"] == 1.0 and none["flop_ratio"] == 1.0
  for name in ("pumer", "dynamicvit", "smres"):
    r = results[name]
    assert r["flops_per_example"] < none["flops_per_example"], name
    assert r["efficiency"] == pytest.approx(r["speedup"] * r["flop_ratio"])
    assert r["throughput"] > 0 and r["batch"] == 2
  assert results["smres"]["image_size"] == [32, 32]
  # Tokens entering each layer, then the output: the model's own schedule.
  assert results["none"]["tokens_per_layer"] == [25, 25, 25]
  assert results["pumer"]["tokens_per_layer"][0] == 25
  assert results["pumer"]["tokens_per_layer"][-1] < 25


def test_memory_is_null_without_device_stats(report):
  for result in report["results"]:
    if report["device"]["platform"] == "cpu":
      assert result["peak_memory_bytes"] is None
      assert result["memory_reduction"] is None
    assert result["memory_estimate_bytes"] > 0


def test_hf_peer_runs_on_cpu(report):
  peer = report["peer"]
  assert peer["device"] == "cpu" and peer["batch"] == 2
  assert peer["eager"]["throughput"] > 0
  assert peer["compile"] is None and peer["flax_none_over_compile"] is None
  assert peer["flax_none_over_eager"] > 0
  rounds = peer["interleaved"]
  assert rounds["rounds"] == len(rounds["round_ratios"]) == 5
  assert rounds["flax_none_over_eager"] == pytest.approx(
      np.median(rounds["round_ratios"]))


def test_peer_compile_failure_is_recorded(monkeypatch):
  import torch

  def broken(model):
    raise RuntimeError("no compiler here")

  monkeypatch.setattr(torch, "compile", broken)
  peer = hf_peer.run_hf_peer(TINY, text_len=8, image_size=(64, 64),
                                batch=2, platform="cpu", repeats=1, warmup=0)
  assert peer["eager"]["throughput"] > 0
  assert "no compiler here" in peer["compile"]["error"]


def test_random_params_fit_every_method():
  """DynamicViT's predictors are added to the shared backbone."""
  store = programs.ParamStore(TINY, 8, (64, 64), seed=0)
  reduce = METHODS["dynamicvit"]
  params = store.get(reduce)
  assert "keep_predictor_0" in params["vilt"]
  assert "keep_predictor_0" not in store.get(METHODS["none"])["vilt"]
  inputs = programs._example_inputs(2, 8, (64, 64), TINY.vocab_size, 0)
  out = jax.eval_shape(
      lambda p, i, m, x: Vilt(TINY.replace(reduce=reduce)).apply(
          {"params": p}, input_ids=i, attention_mask=m, pixel_values=x),
      params, *inputs)
  assert out["logits"].shape == (2, TINY.num_labels)


def test_cli_writes_json_bfloat16(tmp_path, capsys):
  cli.main(["--preset", "tiny", "--methods", "none,tome", "--dtype",
              "bfloat16", "--out", str(tmp_path), "--repeats", "1",
              "--warmup", "0", "--no_progress"])
  path = tmp_path / "bench_tiny_cpu_bfloat16.json"
  data = json.loads(path.read_text())
  assert set(data) == TOP_KEYS and data["dtype"] == "bfloat16"
  assert data["preset"] == "tiny" and data["peer"] is None
  assert [r["name"] for r in data["results"]] == ["none", "tome"]
  assert data["results"][1]["flop_ratio"] < 1.0
  assert "speedup" in capsys.readouterr().out  # the table


def test_cli_sweep_with_eval_results(tmp_path):
  records = [  # eval.py's report (its other keys omitted)
      {"method": "none", "reduce": {"method": "none"}, "value": 0.70},
      {"method": "pumer", "value": 0.69,
       "reduce": {"method": "pumer", "layers": [1], "prune_ratio": 0.2,
                  "image_merge_ratio": 0.3, "text_merge_ratio": 0.2}},
  ]
  eval_path = tmp_path / "eval.json"
  eval_path.write_text(json.dumps({"task": "vqa", "results": records}))
  cli.main(["--preset", "tiny", "--sweep", "--eval_results",
              str(eval_path), "--out", str(tmp_path), "--repeats", "1",
              "--warmup", "0", "--no_progress"])
  sweep = json.loads((tmp_path / "sweep_tiny_cpu_float32.json").read_text())
  png = tmp_path / "sweep_tiny_cpu_float32.png"
  assert png.read_bytes()[:4] == b"\x89PNG"
  assert sweep["y_axis"] == "accuracy" and sweep["kind"] == "sweep"
  assert {p["accuracy"] for p in sweep["points"]} == {0.70, 0.69}
  assert any(p["pareto"] for p in sweep["points"])
  assert set(sweep["benchmark"]) == TOP_KEYS


def test_flop_mode_plot_writes_png(tmp_path):
  points = [dict(name="none", speedup=1.0, flop_ratio=1.0, pareto=False),
            dict(name="a", speedup=1.4, flop_ratio=0.6, pareto=False)]
  path = tmp_path / "p.png"
  pareto.plot_sweep(points, "flop_ratio", "FLOP ratio vs speedup", path)
  assert path.read_bytes()[:4] == b"\x89PNG"


def test_pareto_front():
  xs = [1.0, 1.5, 1.2, 2.0, 1.5]
  ys = [0.70, 0.69, 0.65, 0.60, 0.69]
  assert pareto.pareto_front(xs, ys) == [True, True, False, True, True]


def test_grid_skips_settings_the_model_cannot_run():
  # The sized semantics refuses a merge past the matching's cap (the
  # official one clamps it, as PuMer's code).
  base = presets.PRESETS["vilt_vqa"].methods["pumer"].replace(
      semantics="sized")
  model = presets.PRESETS["vilt_vqa"].model
  check = lambda r: presets.check_setup(model, {"x": r}, 32, (384, 384), {})
  methods, skipped = pareto.grid_methods(
      base, {"prune_ratio": (0.1, 0.3), "image_merge_ratio": (0.3, 0.9)},
      check)
  assert len(methods) == 2 and len(skipped) == 2
  assert all(r.image_merge_ratio == 0.3 for r in methods.values())
  with pytest.raises(ValueError, match="does not take"):
    pareto.grid_methods(base, {"ratio": (0.1,)}, check)


def test_eval_results_errors(tmp_path):
  path = tmp_path / "e.json"
  path.write_text(json.dumps([{"reduce": {}, "value": 0.5}]))
  with pytest.raises(ValueError, match="expected eval.py's report"):
    pareto.load_eval_results(path)
  record = lambda **r: json.dumps({"results": [r]})
  path.write_text(record(reduce={"method": "tome"}, accuracy=0.5))
  with pytest.raises(ValueError, match=r"results\[0\] needs 'reduce' and "
                     "'value'"):
    pareto.load_eval_results(path)
  path.write_text(record(reduce={"method": "tome", "prune_ratio": 0.1},
                         value=0.5))
  with pytest.raises(ValueError, match=r"results\[0\]: .*unknown keys"):
    pareto.load_eval_results(path)
  path.write_text(json.dumps({"results": [{"reduce": {}, "value": 0.5}] * 2}))
  with pytest.raises(ValueError, match="repeats the setting"):
    pareto.load_eval_results(path)


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_start=0), "batch_start=0 must be a positive int"),
    (dict(batch_start=4, max_batch=2), "below batch_start"),
    (dict(batch_step=-8), "batch_step=-8"),
    (dict(repeats=0), "repeats=0"),
    (dict(peer="onnx"), "peer='onnx'"),
])
def test_bad_batches_and_options(kwargs, match):
  with pytest.raises(ValueError, match=match):
    runner.run_benchmark(TINY, {"none": ReduceConfig()}, 8, 64,
                        **{**FAST, **kwargs})


def test_bad_methods():
  with pytest.raises(ValueError, match="unknown method"):
    presets.select_methods(METHODS, ["none", "pumr"])
  with pytest.raises(ValueError, match="multiple of patch_size=16"):
    runner.run_benchmark(
        TINY, {"smres": ReduceConfig(method="smres", smres_size=(40, 40))},
        8, 64, **FAST)
  with pytest.raises(ValueError, match="must have reduce.method='none'"):
    runner.run_benchmark(TINY, {"none": METHODS["pumer"]}, 8, 64, **FAST)
  with pytest.raises(SystemExit):
    cli.parse_args(["--eval_results", "x.json"])


def test_paper_presets():
  """The paper's shapes and schedules (DESIGN 4.3): 145 image tokens."""
  vqa, ve = presets.PRESETS["vilt_vqa"], presets.PRESETS["vilt_ve"]
  assert (vqa.text_len, ve.text_len) == (32, 40)
  assert vqa.methods["pumer"].layers == (2, 5, 8)
  assert ve.methods["pumer"].layers == (2, 4, 6, 8)
  sched = presets.schedule(vqa.model, vqa.methods["pumer"], 32, (384, 384))
  assert sched.image_len == 145
  assert sched.image_text_in(12) == (31, 17)
  for preset in (vqa, ve):
    for name, reduce in preset.methods.items():
      presets.check_setup(preset.model, {name: reduce}, preset.text_len,
                        preset.image_size, {})


def test_meter_preset_runs_every_method():
  """METER through the same protocol: two streams, reducers in the fusion."""
  preset = presets.PRESETS["meter_tiny"]
  report = runner.run_benchmark(preset.model, preset.methods, preset.text_len,
                               preset.image_size, **FAST)
  assert report["model"]["arch"] == "meter"
  assert report["model"]["num_fusion_layers"] == 2
  results = by_name(report)
  assert set(results) == set(preset.methods)
  # 17 image + 8 text tokens enter the fusion; PuMer prunes and merges both.
  assert results["none"]["tokens_per_layer"] == [25] * 3
  assert results["pumer"]["tokens_per_layer"] == [25, 17, 12]
  assert results["tome"]["tokens_per_layer"] == [25, 22, 19]
  for name in ("pumer", "tome", "dynamicvit", "smres"):
    assert results[name]["flop_ratio"] < 1.0, name
  with pytest.raises(ValueError, match="METER has no Hugging Face"):
    runner.run_benchmark(preset.model, {"none": ReduceConfig()},
                        preset.text_len, preset.image_size, peer="hf", **FAST)


def test_meter_paper_presets():
  """METER-B/16 at 384: 577 image tokens, PuMer's reference counts."""
  vqa, ve = presets.PRESETS["meter_vqa"], presets.PRESETS["meter_ve"]
  sched = presets.schedule(vqa.model, vqa.methods["pumer"], 32, (384, 384))
  assert sched.image_len == 577
  assert [(s.image_out, s.text_out) for s in sched.steps] == [
      (347, 26), (209, 21), (125, 17), (75, 14)]
  for preset in (vqa, ve):
    for name, reduce in preset.methods.items():
      presets.check_setup(preset.model, {name: reduce}, preset.text_len,
                        preset.image_size, {})


def test_cli_times_a_checkpoint_architecture(tmp_path):
  """A finalized (sliced) model benchmarks like any other: --model_dir."""
  sliced = TINY.replace(pruned_sizes=(("vilt", "heads", (1, 0)),
                                      ("vilt", "units", (16, 64))))
  model_dir = tmp_path / "small"
  (model_dir).mkdir()
  (model_dir / saved.CONFIG_FILE).write_text(
      json.dumps(saved.config_to_dict(sliced)))
  report = cli.main(["--preset", "tiny", "--model_dir", str(model_dir),
                       "--methods", "none,smres", "--batch_start", "2",
                       "--max_batch", "2", "--repeats", "1", "--warmup", "1",
                       "--no_progress", "--out", str(tmp_path / "out")])
  assert report["preset"] == "tiny_small"
  full = runner.run_benchmark(TINY, {"none": ReduceConfig()}, 8, 64, **FAST)
  # Fewer heads and units: fewer FLOPs than the unsliced model.
  assert (report["results"][0]["flops_per_example"]
          < full["results"][0]["flops_per_example"])
  with pytest.raises(FileNotFoundError, match="model checkpoint"):
    cli.main(["--preset", "tiny", "--model_dir", str(tmp_path)])
