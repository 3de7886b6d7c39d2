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
merge's matching counts as matching). Times are summed over the trace's
threads (CPU time per call), so shares are of the layer's work.
"""

from __future__ import annotations

import collections
import gzip
import json
import pathlib
import re
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import jax

from pumer_jax.reduce.scopes import PARTS

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


def profile(fn: Callable, args: Sequence[Any], calls: int) -> dict[str, float]:
  """Microseconds per call of each executed instruction (summed threads)."""
  with tempfile.TemporaryDirectory() as log_dir:
    jax.profiler.start_trace(log_dir, create_perfetto_trace=True)
    for _ in range(calls):
      jax.block_until_ready(fn(*args))
    jax.profiler.stop_trace()
    trace = next(pathlib.Path(log_dir).rglob("*perfetto_trace.json.gz"))
    events = json.load(gzip.open(trace))
  events = events["traceEvents"] if isinstance(events, dict) else events
  total = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and "dur" in e:
      total[e["name"]] += float(e["dur"]) / calls
  return total


def layer_breakdown(compiled, args: Sequence[Any], layers: Sequence[int],
                    calls: int = 5) -> list[dict[str, Any]]:
  """Per layer of `layers`: its time per call (us) and each part's share."""
  scopes = instruction_scopes(compiled.as_text())
  jax.block_until_ready(compiled(*args))  # warm up
  per_layer = collections.defaultdict(collections.Counter)
  for instruction, us in profile(compiled, args, calls).items():
    where = attribute(scopes.get(instruction, ""))
    if where is not None:
      per_layer[where[0]][where[1]] += us
  rows = []
  for layer in layers:
    parts = per_layer[layer]
    total = sum(parts.values())
    rows.append(dict(layer=layer, layer_us=total,
                     shares={k: v / total for k, v in sorted(parts.items())}
                     if total else {}))
  return rows
