"""What a compiled XLA program costs, from the compiler's own analysis.

Shared by the benchmark and eval.py so both report the same FLOPs.
"""

from __future__ import annotations


def compiled_flops(compiled) -> float | None:
  """Total FLOPs of a compiled program; `cost_analysis()` is a dict, or a
  list of per-device dicts in some JAX versions, or absent."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # some backends do not implement it
    return None
  if isinstance(cost, (list, tuple)):  # one dict per device: sum them
    if not cost or any("flops" not in c for c in cost):
      return None
    return float(sum(c["flops"] for c in cost))
  if not cost or "flops" not in cost:
    return None
  return float(cost["flops"])


def compiled_memory(compiled) -> int | None:
  """Backend-independent memory estimate: temp + argument + output bytes of
  the compiled program (aliased bytes counted once)."""
  try:
    stats = compiled.memory_analysis()
  except Exception:
    return None
  if stats is None:
    return None
  return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes
             + stats.output_size_in_bytes - stats.alias_size_in_bytes)
