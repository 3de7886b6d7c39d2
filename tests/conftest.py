"""Test-session set-up shared by every test file."""

import os
import tempfile

# Tests run small models whose time goes to compiling, not running: skip
# XLA's expensive CPU code optimisation (halves the suite; same numerics).
os.environ["XLA_FLAGS"] = " ".join(filter(None, (
    os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true")))

# The project's XLA:CPU defaults, as train.py/eval.py apply them: their
# subprocesses must compute bit-identically to the in-process references.
from pumer_jax import xla_cpu  # noqa: E402

xla_cpu.apply_fast_defaults()

import jax  # noqa: E402  (after XLA_FLAGS)

# Identical programs compiled by different tests (each training run builds
# its step anew) are compiled once per session: a persistent cache in a
# temporary directory, so nothing outlives the run. The same settings go
# into the environment, so the train.py/eval.py subprocesses of the
# end-to-end tests (three resumptions of one run, say) share the cache.
_CACHE = tempfile.TemporaryDirectory(prefix="pumer_jax_xla_cache_")
_CACHE_SETTINGS = {"jax_compilation_cache_dir": _CACHE.name,
                   "jax_persistent_cache_min_compile_time_secs": 0.0,
                   "jax_persistent_cache_min_entry_size_bytes": 0}
for _name, _value in _CACHE_SETTINGS.items():
  jax.config.update(_name, _value)
  os.environ[_name.upper()] = str(_value)
