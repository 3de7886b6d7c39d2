"""`make demo` and the benchmarks reuse cached results only for the same weights.

A checkpoint replaced at the same path (as `checkpoints/vilt_shapes` was)
must not be served the operating points searched on the old one.
"""

import jax

from pumer_jax import demo
from pumer_jax.models import saved
from train_fixtures import init_model, tiny_config


def test_weights_digest_follows_the_weights_not_the_path(tmp_path):
  model, params = init_model(tiny_config())
  saved.save_model(tmp_path / "a", model.config, params, overwrite=True)
  saved.save_model(tmp_path / "b", model.config, params, overwrite=True)
  first = saved.weights_digest(tmp_path / "a")
  assert saved.weights_digest(tmp_path / "b") == first  # same weights, new path
  other = jax.tree.map(lambda x: x + 1.0, params)
  saved.save_model(tmp_path / "a", model.config, other, overwrite=True)
  assert saved.weights_digest(tmp_path / "a") != first  # new weights, same path


def test_cache_key_separates_its_parts():
  assert demo.cache_key("model", "data") == demo.cache_key("model", "data")
  assert demo.cache_key("model", "data") != demo.cache_key("model", "data2")
  assert demo.cache_key("ab", "c") != demo.cache_key("a", "bc")
