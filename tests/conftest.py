"""Test-session set-up shared by every test file."""

import tempfile

import jax

# Identical programs compiled by different tests (each training run builds
# its step anew) are compiled once per session: a persistent cache in a
# temporary directory, so nothing outlives the run.
_CACHE = tempfile.TemporaryDirectory(prefix="pumer_jax_xla_cache_")
jax.config.update("jax_compilation_cache_dir", _CACHE.name)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
