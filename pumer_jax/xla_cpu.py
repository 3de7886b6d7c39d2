"""XLA:CPU settings the project's programs run with, set before JAX starts.

jaxlib 0.10 hands most CPU work to YNNPACK fusions by default. On the
transformers here that is slower than XLA's own emitters and Eigen: ViLT-B/32
unreduced runs 1.31x faster without them on a 2-core AVX-512 CPU
(`benchmarks/results/xla_cpu_defaults_cpu.md`), its token-major attention
einsums ~4x faster. The entry points (train.py, eval.py, `python -m
pumer_jax.bench`, the demo, the tests' conftest) call `apply_fast_defaults()`
first; a flag the user already put in `XLA_FLAGS` wins, and
`PUMER_JAX_XLA_DEFAULTS=0` leaves XLA as it is. Only CPU programs are
affected: the flag is XLA:CPU's.
"""

from __future__ import annotations

import mmap
import os
import pathlib

# Turns YNNPACK fusion off: an explicit empty list replaces XLA's default.
YNN_FLAG_NAME = "xla_cpu_experimental_ynn_fusion_type"
FAST_CPU_FLAGS = (f"--{YNN_FLAG_NAME}=",)
OPT_OUT = "PUMER_JAX_XLA_DEFAULTS"


def _jaxlib_knows(flag_name: str) -> bool:
  """Whether the installed jaxlib parses `flag_name`.

  XLA aborts the process on a flag it does not know, so a flag is only set
  when its name is in jaxlib's library (read through mmap, milliseconds).
  """
  try:
    import jaxlib
  except ImportError:
    return False
  needle = flag_name.encode()
  for library in pathlib.Path(jaxlib.__file__).parent.glob("*.so"):
    try:
      with open(library, "rb") as f, mmap.mmap(
          f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data.find(needle) >= 0:
          return True
    except (OSError, ValueError):  # empty or unreadable file
      continue
  return False


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge
  except ImportError:
    return False
  started = getattr(xla_bridge, "backends_are_initialized", None)
  return bool(started and started())


def apply_fast_defaults(environ: dict[str, str] | None = None) -> list[str]:
  """Adds `FAST_CPU_FLAGS` to `XLA_FLAGS` where the user has not chosen.

  Must run before JAX creates its backends (the first device use); after
  that XLA_FLAGS is no longer read and nothing is changed.

  Returns:
    The flags added (empty when opted out, already chosen, unknown to this
    jaxlib, or too late).
  """
  environ = os.environ if environ is None else environ
  if environ.get(OPT_OUT, "1") == "0" or _backends_started():
    return []
  current = environ.get("XLA_FLAGS", "")
  added = [flag for flag in FAST_CPU_FLAGS
           if flag.split("=")[0] not in current
           and _jaxlib_knows(flag.split("=")[0].lstrip("-"))]
  if added:
    environ["XLA_FLAGS"] = " ".join(filter(None, [current, *added]))
  return added
