"""Every GPU measurement of the project in one prepared command.

  benchmarks/gpu/run.sh [--out DIR]        # on one H100/H200-class GPU
  benchmarks/gpu/run.sh --smoke --out DIR  # the same code on a CPU, tiny

Writes into one folder: the benchmark (`bench_*.json`) of the ViLT-B/32 VE
and VQA presets and METER-B/16 VQA in bfloat16 and float32 (every method,
the batch grown through a few sizes up to 1024, throughput, speedup,
FLOP-ratio speedup, efficiency, peak memory from `memory_stats()`,
activation bytes, the autograd memory protocol; in bfloat16 the train
step's memory and examples/s and the crossover batches), Hugging Face's PyTorch ViLT on CUDA (eager and
`torch.compile`) at the same shapes, one ViLT-B/32 + PuMer bf16 training
step with its MFU, `bipartite_merge`'s scatter forms (`merge_scatter_*`),
a reduction layer's explicit vs fused + recomputed attention
(`recomputed_probs_*`),
and `summary.md` with every table.

It imports only what the GPU image has (jax, flax, optax, orbax, torch,
transformers, matplotlib, tqdm): nothing of TFDS, grain, ml_collections or
tensorboardX, so no wheels need to travel (a test checks this in --smoke).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

import flax
import jax
import jax.numpy as jnp

from pumer_jax.bench import presets as presets_lib
from pumer_jax.bench.measure import compiled_flops, time_jitted
from pumer_jax.bench.report import format_table, output_path, write_json
from pumer_jax.bench.runner import run_benchmark
from pumer_jax.models import ReduceConfig, Vilt, ViltConfig
from pumer_jax.models.vilt import example_inputs
from pumer_jax.train import losses, optim
from pumer_jax.train.state import TrainState
from pumer_jax.train.step import make_train_step

# preset -> dtype -> batch sizes to grow through (each one a compile).
PLAN = {
    "vilt_ve": {"bfloat16": (64, 256, 1024), "float32": (64, 256)},
    "vilt_vqa": {"bfloat16": (64, 256, 1024), "float32": (64, 256)},
    "meter_vqa": {"bfloat16": (32, 128), "float32": (32,)},
}
# preset -> dtype -> what each run measures beside inference: the autograd
# memory protocol (every run), the train step (peak and examples/s) and the
# crossover batches (bfloat16, the dtype a GPU user runs).
PROTOCOLS = {
    "vilt_ve": {"bfloat16": dict(train_step=True)},
    "vilt_vqa": {"bfloat16": dict(train_step=True,
                                  crossover_batches=(1, 4, 16, 64))},
    "meter_vqa": {"bfloat16": dict(train_step=True,
                                   crossover_batches=(1, 4, 16))},
    "tiny": {"float32": dict(train_step=True, crossover_batches=(1, 2))},
}
# The smoke run: the same code on a CPU in under a minute, float32, three
# methods, one batch size. bfloat16 (slow to compile on CPU), growing the
# batch and METER's bench path are tested by tests/test_bench.py.
SMOKE_PLAN = {"tiny": {"float32": (2,)}}
SMOKE_METHODS = ("none", "pumer", "tome")
PEER = {"vilt_ve", "tiny"}  # presets timed against Hugging Face's PyTorch
# Dense bf16 tensor-core peaks from the vendors' data sheets (FLOP/s): the
# MFU denominator, stated in the output.
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}


def peak_bf16(device) -> tuple[float | None, str]:
  for name, peak in PEAK_BF16.items():
    if name in device.device_kind:
      return peak, f"{name} dense bf16 {peak / 1e12:.1f} TFLOP/s (data sheet)"
  return None, f"no stated bf16 peak for {device.device_kind!r}"


def benchmarks(plan, out: pathlib.Path, smoke: bool,
               skip: set[str]) -> list[str]:
  tables = []
  for name, dtypes in plan.items():
    preset = presets_lib.PRESETS[name]
    for dtype, batches in dtypes.items():
      started = time.perf_counter()
      methods = ({k: preset.methods[k] for k in SMOKE_METHODS} if smoke
                 else preset.methods)
      peer = name in PEER and not (smoke and dtype == "bfloat16")
      report = run_benchmark(
          preset.model.replace(dtype=dtype), methods, preset.text_len,
          preset.image_size, batch_start=batches[0], batches=batches,
          max_batch=batches[-1], memory_batch=batches[0],
          activation_batch=(batches[-1] if smoke
                            else preset.activation_batch or None),
          repeats=3 if smoke else 5, warmup=1 if smoke else 2,
          min_seconds=0.0 if smoke else 0.5,
          peer="hf" if peer else None, peer_compile=not smoke,
          progress=False, preset=name,
          **({} if "protocols" in skip
             else PROTOCOLS.get(name, {}).get(dtype, {})),
          autograd="protocols" not in skip)
      path = write_json(output_path(out, "bench", report), report)
      tables.append(f"## {name}, {dtype} ({time.perf_counter() - started:.0f}"
                    f" s)\n\n```\n{format_table(report)}\n```\n")
      print(tables[-1], flush=True)
      print(f"wrote {path}", flush=True)
  return tables


class _Optim(dict):
  """`config.optim`'s fields without ml_collections (not on the GPU image)."""
  __getattr__ = dict.__getitem__


def train_step_mfu(smoke: bool) -> dict:
  """One ViLT-B/32 + PuMer (VQA schedule) bf16 training step: time, model
  FLOPs from the compiled step's cost analysis, and MFU."""
  if smoke:
    config = presets_lib.PRESETS["tiny"].model.replace(head="vqa")
    reduce = presets_lib.PRESETS["tiny"].methods["pumer"]
    batch, text_len, image = 4, 8, 64
  else:
    config = ViltConfig(head="vqa", num_labels=3129)
    reduce = ReduceConfig(method="pumer", layers=(2, 5, 8), prune_ratio=0.1,
                          image_merge_ratio=0.3, text_merge_ratio=0.2)
    batch, text_len, image = 128, 32, 384
  config = config.replace(dtype="bfloat16", reduce=reduce,
                          input_size=(image, image))
  model = Vilt(config)
  inputs = {k: jnp.asarray(v) for k, v in
            example_inputs(config, batch, text_len).items()}
  inputs["input_ids"] = jnp.ones_like(inputs["input_ids"])
  params = flax.linen.meta.unbox(
      jax.jit(model.init)(jax.random.PRNGKey(0), **inputs)["params"])
  tx = optim.make_optimizer(_Optim(
      lr=1e-4, end_lr=0.0, warmup_steps=10, decay="linear", b1=0.9,
      b2=0.999, weight_decay=0.01, grad_clip=1.0, lr_mults={}), 1000, params)
  data = dict(inputs, labels=jnp.zeros((batch, config.num_labels)),
              valid=jnp.ones((batch,), bool))

  def loss_fn(params, gates, batch, teacher_params, rng, step):
    del gates, teacher_params, step
    out = model.apply({"params": params}, input_ids=batch["input_ids"],
                      attention_mask=batch["attention_mask"],
                      pixel_values=batch["pixel_values"], train=True,
                      rngs={"dropout": rng})
    loss = losses.masked_mean(losses.vqa_bce(out["logits"], batch["labels"]),
                              batch["valid"])
    return loss, {"loss": loss}

  state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params),
                     jax.random.PRNGKey(1))
  step = jax.jit(make_train_step(loss_fn, tx))
  flops = compiled_flops(step.lower(state, data, None).compile())
  timing = time_jitted(step, state, data, None, repeats=3 if smoke else 10,
                       warmup=1 if smoke else 3)
  device = jax.devices()[0]
  peak, peak_note = peak_bf16(device)
  achieved = None if flops is None else flops / timing.median_s
  return dict(
      model="ViLT-B/32" if not smoke else "tiny ViLT", reduce="pumer",
      dtype="bfloat16", batch=batch, text_len=text_len, image_size=image,
      device=device.device_kind, step=timing.as_dict(), flops_per_step=flops,
      achieved_flops_per_s=achieved, peak=peak_note,
      mfu=None if peak is None or achieved is None else achieved / peak)


def merge_scatter(out: pathlib.Path, smoke: bool) -> None:
  args = ["--batch", "2", "--tokens", "17", "--r", "2", "4", "--repeats",
          "2"] if smoke else []
  subprocess.run([sys.executable, "benchmarks/merge_scatter.py", "--out",
                  str(out), *args], check=True)


def recomputed_probs(out: pathlib.Path, smoke: bool) -> None:
  args = (["--batch", "2", "--rounds", "2", "--repeats", "2"] if smoke
          else ["--batch", "64", "--dtype", "bfloat16"])
  subprocess.run([sys.executable, "benchmarks/recomputed_probs.py", "--out",
                  str(out), *args], check=True)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default="benchmarks/results/gpu")
  parser.add_argument("--smoke", action="store_true",
                      help="tiny presets, any device: checks the command")
  parser.add_argument("--skip", default="",
                      help="comma list of parts to skip: bench,train,merge,probs,"
                      "protocols (the benchmark's autograd memory, train "
                      "step and crossover batches)")
  args = parser.parse_args(argv)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  skip = set(filter(None, args.skip.split(",")))
  started = time.perf_counter()
  device = jax.devices()[0]
  summary = [f"# GPU measurements: {device.platform}, {device.device_kind}, "
             f"jax {jax.__version__}\n"]
  if "merge" not in skip:  # seconds; first, so DEFAULT_SCATTER gets data
    merge_scatter(out, args.smoke)
    summary.append((out / f"merge_scatter_{device.platform}.md").read_text())
  if "probs" not in skip:  # seconds: explicit vs fused + recomputed rows
    recomputed_probs(out, args.smoke)
    dtype = "float32" if args.smoke else "bfloat16"
    summary.append(
        (out / f"recomputed_probs_{device.platform}_{dtype}.md").read_text())
  if "train" not in skip:
    mfu = train_step_mfu(args.smoke)
    (out / "train_step_mfu.json").write_text(json.dumps(mfu, indent=2) + "\n")
    summary.append(
        f"## Training step: {mfu['model']} + PuMer, bf16, batch "
        f"{mfu['batch']}\n\nmedian {mfu['step']['median_s'] * 1e3:.1f} ms, "
        f"{(mfu['flops_per_step'] or 0) / 1e12:.3f} TFLOP/step, MFU "
        + (f"{mfu['mfu']:.1%}" if mfu["mfu"] is not None else "n/a")
        + f" ({mfu['peak']})\n")
    print(summary[-1], flush=True)
  if "bench" not in skip:
    summary += benchmarks(SMOKE_PLAN if args.smoke else PLAN, out,
                          args.smoke, skip)
  summary.append(f"\nTotal {time.perf_counter() - started:.0f} s.\n")
  (out / "summary.md").write_text("\n".join(summary))
  print(f"wrote {out / 'summary.md'}")


if __name__ == "__main__":
  main()
