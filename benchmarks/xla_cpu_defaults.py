"""What `pumer_jax.xla_cpu.apply_fast_defaults` buys: ViLT-B/32 forward time
under jaxlib's XLA:CPU defaults and under the project's, in alternating
processes (XLA_FLAGS is read once per process), so drift on a shared machine
hits both alike.

  python benchmarks/xla_cpu_defaults.py --rounds 3 --preset vilt_ve

Writes benchmarks/results/xla_cpu_defaults_cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

from pumer_jax import xla_cpu

# One process: compile the preset's unreduced forward, time `repeats` calls.
_CHILD = """
import json, sys, time
import jax
from pumer_jax.bench import presets, programs
from pumer_jax.models import ReduceConfig
preset = presets.PRESETS[sys.argv[1]]
batch, repeats = int(sys.argv[2]), int(sys.argv[3])
store = programs.ParamStore(preset.model, preset.text_len, preset.image_size, 0)
params = store.get(ReduceConfig())
inputs = programs._example_inputs(batch, preset.text_len, preset.image_size,
                                  preset.model.vocab_size, 0)
forward = programs.compile_forward(preset.model, ReduceConfig(), params, inputs)
jax.block_until_ready(forward(params, *inputs))
times = []
for _ in range(repeats):
  start = time.perf_counter()
  jax.block_until_ready(forward(params, *inputs))
  times.append(time.perf_counter() - start)
print(json.dumps(times))
"""

SETTINGS = {
    "jaxlib defaults": "",
    "pumer_jax defaults": " ".join(xla_cpu.FAST_CPU_FLAGS),
}


def _run(flags: str, preset: str, batch: int, repeats: int) -> list[float]:
  env = dict(os.environ, XLA_FLAGS=flags, PUMER_JAX_XLA_DEFAULTS="0")
  out = subprocess.run([sys.executable, "-c", _CHILD, preset, str(batch),
                        str(repeats)], env=env, check=True,
                       capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="vilt_ve")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=8)
  parser.add_argument("--out", default="benchmarks/results")
  args = parser.parse_args()
  if not xla_cpu.apply_fast_defaults({}):
    sys.exit("this jaxlib has no XLA:CPU YNNPACK flag: nothing to compare")
  times: dict[str, list[float]] = {name: [] for name in SETTINGS}
  for round_ in range(args.rounds):
    for name, flags in SETTINGS.items():
      times[name] += _run(flags, args.preset, args.batch, args.repeats)
      print(f"round {round_ + 1}: {name}: median "
            f"{1e3 * statistics.median(times[name]):.0f} ms so far")
  medians = {name: statistics.median(t) for name, t in times.items()}
  base = medians["jaxlib defaults"]
  result = dict(
      preset=args.preset, batch=args.batch, rounds=args.rounds,
      repeats=args.repeats, settings=SETTINGS,
      median_seconds=medians, times=times,
      speedup={name: base / m for name, m in medians.items()},
      examples_per_second={name: args.batch / m
                           for name, m in medians.items()})
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / "xla_cpu_defaults_cpu.json").write_text(json.dumps(result, indent=1))
  lines = [f"# XLA:CPU settings: {args.preset} unreduced, batch {args.batch}",
           "", f"`python benchmarks/xla_cpu_defaults.py --rounds "
           f"{args.rounds} --preset {args.preset}`: {args.rounds} alternating "
           f"processes per setting, {args.repeats} timed calls each.", "",
           "| setting | XLA_FLAGS | median ms | ex/s | speedup |",
           "|---|---|---|---|---|"]
  for name, flags in SETTINGS.items():
    lines.append(f"| {name} | `{flags or '(none)'}` | "
                 f"{1e3 * medians[name]:.0f} | "
                 f"{result['examples_per_second'][name]:.2f} | "
                 f"{result['speedup'][name]:.2f}x |")
  (out / "xla_cpu_defaults_cpu.md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
