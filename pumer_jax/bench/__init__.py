"""Inference throughput, FLOPs and memory of ViLT or METER with each reducer.

The paper's protocol (DESIGN 8), in one run on one device: for every method
jit-compile the inference forward pass, warm up, time it with
`block_until_ready` (median of repeats, p10-p90 spread), growing the batch
from `batch_start` by `batch_step` until XLA runs out of memory or
`max_batch`, and keep the best throughput. FLOPs per example come from the
compiled program's `cost_analysis()`, peak memory from
`device.memory_stats()` at one common batch (`memory_batch`), and every
method is compared with the unreduced model (`none`) measured in the same
run. Beside inference: the paper's autograd memory protocol, the train
step (memory, examples/s) and the crossover batch (`protocols`). Weights
are random: throughput needs no trained weights.

  python -m pumer_jax.bench --preset vilt_vqa                 # paper shapes
  python -m pumer_jax.bench --preset meter_vqa                # METER-B/16, 384
  python -m pumer_jax.bench --preset tiny --peer hf           # CPU smoke run
  python -m pumer_jax.bench --preset vilt_vqa --sweep --eval_results r.json

Modules: `presets` (what runs, checked), `programs` (random weights and
inputs, compiled forwards), `protocols` (the autograd forward and the
train step), `measure` (timing and compiled cost), `phases` (each
measurement over every method), `runner` (`run_benchmark`, the Python API), `report` (table, JSON),
`hf_peer` (Hugging Face's PyTorch ViLT), `pareto` (the sweep), `cli`.
See benchmarks/README.md for every column.
"""

from pumer_jax.bench.presets import PRESETS, Preset
from pumer_jax.bench.runner import run_benchmark

__all__ = [
    "PRESETS",
    "Preset",
    "run_benchmark",
]
