"""ViLT's init options: the image position table and the patch embedding's scale."""

import jax
import numpy as np
import pytest

from pumer_jax.models import Vilt, ViltConfig
from pumer_jax.models.positions import sincos2d
from pumer_jax.models.vilt import example_inputs

SMALL = dict(vocab_size=30, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
             intermediate_size=64, image_size=64, patch_size=16, num_labels=3,
             max_position_embeddings=8)


def _params(**options):
  config = ViltConfig(**SMALL, **options)
  return Vilt(config).init(jax.random.PRNGKey(0), **example_inputs(config))["params"]


def _find(tree, name):
  return [v for path, v in jax.tree_util.tree_leaves_with_path(tree)
          if name in jax.tree_util.keystr(path)]


def test_sincos2d_table():
  table = sincos2d(4, 16)
  assert table.shape == (16, 16)
  np.testing.assert_allclose(table[0], [0, 0, 0, 0, 1, 1, 1, 1] * 2, atol=1e-7)
  # Row-major: the first half codes the row, the second half the column.
  np.testing.assert_allclose(table[1, :8], table[0, :8])
  np.testing.assert_allclose(table[4, 8:], table[0, 8:])
  assert not np.allclose(table[1, 8:], table[0, 8:])


def _leaf(params, name):
  return np.asarray(jax.tree_util.tree_leaves(_find(params, name))[0])


def test_image_position_init_options():
  key = "'embeddings']['position_embeddings"
  table = _leaf(_params(image_position_init="sincos2d", image_position_scale=0.5), key)
  np.testing.assert_allclose(table[0, 0], 0)
  np.testing.assert_allclose(table[0, 1:], 0.5 * sincos2d(4, 32), rtol=1e-6)
  assert abs(_leaf(_params(), key).std() - 0.02) < 0.005  # the default: N(0, 0.02)


def test_patch_init_std_scales_the_patch_embedding():
  key = "patch_embeddings']['kernel"
  std = lambda p: float(_leaf(p, key).std())
  assert abs(std(_params()) - 0.02) < 0.002
  assert abs(std(_params(patch_init_std=0.05)) - 0.05) < 0.005


@pytest.mark.parametrize("options, match", [
    (dict(image_position_init="learned"), "image_position_init"),
    (dict(image_position_init="sincos2d", hidden_size=30, num_attention_heads=2),
     "divisible by 4"),
    (dict(image_position_scale=0.0), "image_position_scale"),
    (dict(patch_init_std=-1.0), "patch_init_std"),
])
def test_bad_init_options_are_rejected(options, match):
  with pytest.raises(ValueError, match=match):
    ViltConfig(**{**SMALL, **options})


def test_meter_vision_tower_takes_the_same_init_options():
  from pumer_jax.configs.meter_task import RUNLOCAL_MODEL
  from pumer_jax.models import Meter, MeterConfig
  from pumer_jax.models.meter import example_inputs as meter_inputs
  config = MeterConfig(**RUNLOCAL_MODEL, vocab_size=30, max_position_embeddings=10,
                       num_labels=3, image_position_init="sincos2d",
                       image_position_scale=0.5, patch_init_std=0.05)
  params = Meter(config).init(jax.random.PRNGKey(0), **meter_inputs(config))["params"]
  table = _leaf(params, "'position_embedding'")
  np.testing.assert_allclose(table[1:], 0.5 * sincos2d(4, 32), rtol=1e-6)
  assert abs(float(_leaf(params, "patch_embedding']['kernel").std()) - 0.05) < 0.005
  with pytest.raises(ValueError, match="image_position_init"):
    MeterConfig(image_position_init="learned")
