"""Where a reduction layer's time goes: attention, MLP, and the reducer's
scoring, matching and gathers/scatters.

A compiled forward is profiled for a few calls (`jax.profiler`, a Perfetto
trace) and every executed XLA instruction is attributed to its layer and
part by its `op_name` metadata: ViLT's `layer_{i}.attend` /
`layer_{i}.feed_forward` methods, METER's fusion blocks
(`{text,image}_layer_{i}.self_attend` / `.cross_attend` / `.feed_forward`,
both streams summed per block), the reducer step's `reducer_{layer}` scope
and, inside it, the `score` / `match` / `apply` scopes of the shared
building blocks (`pumer_jax/reduce/scopes.py`; the innermost one wins, so a
merge's matching counts as matching).

The trace must hold the work. On the project's CPU runtime (YNNPACK fusion
off, `pumer_jax/xla_cpu.py`) XLA:CPU's GEMMs run untraced: ViLT-B/32's
traced instructions summed to a fifth of the forward's wall time, the MLPs
nearly absent. With jaxlib's default YNNPACK fusions on one thread every
fusion, the GEMMs included, is traced (the traced instructions summed to
1.07x the wall time of a 3-layer ViLT-B/32 forward). `measure` therefore
profiles in a child process on that runtime (`CHILD_FLAGS`, the YNNPACK
setting removed), and each row carries `coverage`, the traced instructions'
time over the call's wall time: near 1 when the trace holds the work.
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import json
import multiprocessing
import os
import pathlib
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from pumer_jax.bench import presets, programs
from pumer_jax.reduce.scopes import PARTS

# XLA:CPU on the calling thread alone, jaxlib's YNNPACK fusions on: the
# trace then times every instruction.
CHILD_FLAGS = ("--xla_cpu_multi_thread_eigen=false",
               "intra_op_parallelism_threads=1")
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"

# The parts a layer's time is split into, in table order.
HEADER = ("attention", "cross-attention", "mlp", "reducer score",
          "reducer match", "reducer apply", "reducer other")

_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=.*?op_name="([^"]+)"', re.M)
_VILT_LAYER = re.compile(r"/layer_(\d+)\.(attend|feed_forward)")
_FUSION_LAYER = re.compile(
    r"/(?:text|image)_layer_(\d+)\.(self_attend|cross_attend|feed_forward)")
_REDUCER = re.compile(r"/reducer_(\d+)/")
_PART = {"attend": "attention", "self_attend": "attention",
         "cross_attend": "cross-attention", "feed_forward": "mlp"}


def instruction_scopes(hlo_text: str) -> dict[str, str]:
  """Instruction name -> its op_name, from a compiled module's text."""
  return {name: op for name, op in _INSTRUCTION.findall(hlo_text)}


def attribute(op_name: str) -> tuple[int, str] | None:
  """(layer, part) of an instruction, or None outside the layers."""
  if m := _REDUCER.search(op_name):
    inner = [p for p in op_name[m.end():].split("/") if p in PARTS]
    return int(m[1]), f"reducer {inner[-1]}" if inner else "reducer other"
  if m := _FUSION_LAYER.search(op_name) or _VILT_LAYER.search(op_name):
    return int(m[1]), _PART[m[2]]
  return None


def profile(fn: Callable, args: Sequence[Any], calls: int
            ) -> tuple[dict[str, float], float]:
  """Microseconds per call of each traced event, and of the call itself."""
  with tempfile.TemporaryDirectory() as log_dir:
    jax.profiler.start_trace(log_dir, create_perfetto_trace=True)
    start = time.perf_counter()
    for _ in range(calls):
      jax.block_until_ready(fn(*args))
    wall_us = (time.perf_counter() - start) / calls * 1e6
    jax.profiler.stop_trace()
    trace = next(pathlib.Path(log_dir).rglob("*perfetto_trace.json.gz"))
    events = json.load(gzip.open(trace))
  events = events["traceEvents"] if isinstance(events, dict) else events
  total = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and "dur" in e:
      total[e["name"]] += float(e["dur"]) / calls
  return total, wall_us


def layer_breakdown(compiled, args: Sequence[Any], layers: Sequence[int],
                    calls: int = 5) -> list[dict[str, Any]]:
  """Per layer of `layers`: its time per call (us), each part's share, and
  the trace's coverage of the call (see the module docstring)."""
  scopes = instruction_scopes(compiled.as_text())
  jax.block_until_ready(compiled(*args))  # warm up
  per_event, wall_us = profile(compiled, args, calls)
  traced = sum(us for name, us in per_event.items() if name in scopes)
  per_layer = collections.defaultdict(collections.Counter)
  for instruction, us in per_event.items():
    where = attribute(scopes.get(instruction, ""))
    if where is not None:
      per_layer[where[0]][where[1]] += us
  rows = []
  for layer in layers:
    parts = per_layer[layer]
    total = sum(parts.values())
    rows.append(dict(layer=layer, layer_us=total,
                     shares={k: v / total for k, v in sorted(parts.items())}
                     if total else {},
                     coverage=traced / wall_us))
  return rows


def _measure_here(model, methods: Mapping[str, Any], text_len: int,
                  image_size: tuple[int, int], batch: int, calls: int,
                  layers: Mapping[str, Sequence[int]], seed: int
                  ) -> dict[str, list[dict[str, Any]]]:
  """The child's work: every method's rows on this process's XLA:CPU."""
  store = programs.ParamStore(model, text_len, image_size, seed)
  out = {}
  for name, reduce in methods.items():
    hw = presets.method_image_size(reduce, image_size)
    inputs = programs._example_inputs(batch, text_len, hw, model.vocab_size,
                                      seed)
    params = store.get(reduce)
    compiled = programs.compile_forward(model, reduce, params, inputs)
    out[name] = layer_breakdown(compiled, (params, *inputs), layers[name],
                                calls)
  return out


@contextlib.contextmanager
def _child_environment():
  """XLA_FLAGS and JAX_PLATFORMS for a spawned child, restored after."""
  saved = {k: os.environ.get(k) for k in ("XLA_FLAGS", "JAX_PLATFORMS")}
  kept = [f for f in (saved["XLA_FLAGS"] or "").split()
          if not f.startswith(_YNN_FLAG) and f.split("=")[0] not in
          {c.split("=")[0] for c in CHILD_FLAGS}]
  os.environ["XLA_FLAGS"] = " ".join([*kept, *CHILD_FLAGS])
  os.environ["JAX_PLATFORMS"] = "cpu"
  try:
    yield
  finally:
    for key, value in saved.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value


def measure(model, methods: Mapping[str, Any], text_len: int,
            image_size: tuple[int, int], batch: int, calls: int = 5,
            seed: int = 0) -> dict[str, list[dict[str, Any]]]:
  """Each method's reduction layers split by part, on single-threaded
  XLA:CPU with YNNPACK fusions in a spawned child (this process's runtime
  stays as it is).

  A method without reduction layers (`none`, SmRes) splits the layers the
  others reduce, for reference.
  """
  layers = {name: list(presets.schedule(model, r, text_len, image_size).layers)
            for name, r in methods.items()}
  every = sorted({l for ls in layers.values() for l in ls})
  layers = {name: ls or every for name, ls in layers.items()}
  with _child_environment(), multiprocessing.get_context("spawn").Pool(1) as pool:
    return pool.apply(_measure_here, (model, dict(methods), text_len,
                                      tuple(image_size), batch, calls, layers,
                                      seed))
