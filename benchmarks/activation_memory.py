"""Activation memory of every reducer, from the compiled programs alone.

The paper's memory claim concerns activations, which at small batches hide
under the weights. For each preset and method this compiles the inference
forward pass at the preset's large `activation_batch` (256 for ViLT-B/32,
64 for METER-B/16) and reads the compiled program's temporary bytes
(`memory_analysis()`); nothing runs, so any backend (a laptop CPU too) can
report what a GPU would have to hold. FLOPs come from the same programs.

  python benchmarks/activation_memory.py [--presets vilt_vqa,vilt_ve,meter_vqa]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib

import jax
import jax.numpy as jnp

from pumer_jax import xla_cpu
from pumer_jax.bench.measure import compiled_flops, compiled_temp_bytes
from pumer_jax.bench.presets import PRESETS, method_image_size
from pumer_jax.bench.programs import abstract_params, compile_forward


def measure(name: str) -> dict:
  preset = PRESETS[name]
  model = preset.model.replace(input_size=None)
  batch = preset.activation_batch or preset.batch_start
  rows = []
  for method, reduce in preset.methods.items():
    hw = method_image_size(reduce, preset.image_size)
    params = abstract_params(model, reduce, preset.text_len, hw)
    specs = (jax.ShapeDtypeStruct((batch, preset.text_len), jnp.int32),
             jax.ShapeDtypeStruct((batch, preset.text_len), jnp.int32),
             jax.ShapeDtypeStruct((batch, *hw, 3), jnp.float32))
    compiled = compile_forward(model, reduce, params, specs)
    rows.append(dict(method=method, activation_bytes=compiled_temp_bytes(
        compiled), flops_per_example=compiled_flops(compiled) / batch))
    print(f"{name} {method}: {rows[-1]['activation_bytes'] / 2**20:.0f} MiB",
          flush=True)
  base = rows[0]
  for r in rows:
    r["activation_reduction"] = 1 - r["activation_bytes"] / base[
        "activation_bytes"]
    r["flop_ratio"] = r["flops_per_example"] / base["flops_per_example"]
  return dict(preset=name, batch=batch, text_len=preset.text_len,
              image_size=list(preset.image_size), dtype=model.dtype,
              rows=rows)


def markdown(reports: list[dict], device: str) -> str:
  flags = os.environ.get("XLA_FLAGS", "") or "(none)"
  lines = [f"# Activation memory (compiled temporaries), {device}", "",
           f"XLA_FLAGS: `{flags}`", "",
           "| preset | batch | method | activations MiB | reduction | "
           "FLOP ratio |", "|---|---|---|---|---|---|"]
  for report in reports:
    for r in report["rows"]:
      lines.append(
          f"| {report['preset']} | {report['batch']} | {r['method']} | "
          f"{r['activation_bytes'] / 2**20:.0f} | "
          f"{r['activation_reduction']:.1%} | {r['flop_ratio']:.3f} |")
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--presets", default="vilt_vqa,vilt_ve,meter_vqa")
  parser.add_argument("--out", default="benchmarks/results")
  parser.add_argument("--suffix", default="",
                      help="appended to the file names (another setting)")
  args = parser.parse_args()
  xla_cpu.apply_fast_defaults()  # as the bench: the same compiled programs
  reports = [measure(n.strip()) for n in args.presets.split(",")]
  device = jax.devices()[0]
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  stem = out / f"activation_memory_{device.platform}{args.suffix}"
  stem.with_suffix(".json").write_text(json.dumps(
      dict(device=device.device_kind, platform=device.platform,
           jax=jax.__version__, xla_flags=os.environ.get("XLA_FLAGS", ""),
           reports=reports), indent=2) + "\n")
  stem.with_suffix(".md").write_text(markdown(reports, device.device_kind))
  print(markdown(reports, device.device_kind))


if __name__ == "__main__":
  main()
