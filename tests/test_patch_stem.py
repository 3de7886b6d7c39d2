"""The conv patch stem: the same token grid as ViLT's linear patches, local to
its patch, trainable, saved and reloaded; bad settings named."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax.models import Vilt, ViltConfig, saved
from pumer_jax.models.patch_stem import patch_tokens, stem_widths
from pumer_jax.models.vilt import example_inputs

SMALL = dict(vocab_size=30, hidden_size=32, num_hidden_layers=1,
             num_attention_heads=2, intermediate_size=64, image_size=64,
             patch_size=8, num_labels=3, max_position_embeddings=8)


class _Stem(nn.Module):
  stem: str

  @nn.compact
  def __call__(self, pixels):
    return patch_tokens(pixels, stem=self.stem, patch_size=8, width=32,
                        init_std=0.05)


def _apply(stem, pixels):
  module = _Stem(stem)
  variables = module.init(jax.random.PRNGKey(0), pixels)
  return module.apply(variables, pixels)


def test_both_stems_give_one_token_per_patch():
  pixels = jax.random.normal(jax.random.PRNGKey(1), (2, 64, 48, 3))
  assert _apply("linear", pixels).shape == (2, 8, 6, 32)
  assert _apply("conv", pixels).shape == (2, 8, 6, 32)


def test_conv_stem_token_sees_its_patch_and_a_border_only():
  # Three 3x3 stride-2 convs, padded after (XLA's SAME at even sizes): a
  # token's field is its 8x8 patch plus 7 pixels of the next patch, so a
  # pixel reaches its own token and the one before it, never further.
  pixels = jax.random.normal(jax.random.PRNGKey(2), (1, 64, 64, 3))
  moved = pixels.at[0, 40, 40].add(5.0)  # inside patch (5, 5)
  delta = np.abs(np.asarray(_apply("conv", moved) - _apply("conv", pixels)))
  changed = delta.max(-1)[0] > 1e-6
  assert changed[5, 5]
  rows, cols = np.nonzero(changed)
  assert set(rows) <= {4, 5} and set(cols) <= {4, 5}


def test_stem_widths_double_to_the_model_width():
  assert stem_widths(8, 64) == (16, 32, 64)
  assert stem_widths(32, 768) == (48, 96, 192, 384, 768)
  assert stem_widths(2, 32) == (32,)


def test_default_stem_keeps_vilts_parameters():
  params = Vilt(ViltConfig(**SMALL)).init(
      jax.random.PRNGKey(0), **example_inputs(ViltConfig(**SMALL)))["params"]
  embeddings = params["vilt"]["embeddings"]
  assert not any(k.startswith("stem_") for k in embeddings)
  kernel = nn.unbox(embeddings["patch_embeddings"]["kernel"])
  assert kernel.shape == (8, 8, 3, 32)


def test_conv_stem_trains_saves_and_reloads(tmp_path):
  config = ViltConfig(**SMALL, patch_stem="conv")
  model = Vilt(config)
  inputs = example_inputs(config)
  inputs["pixel_values"] = jax.random.normal(
      jax.random.PRNGKey(3), inputs["pixel_values"].shape)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), **inputs)["params"])

  def loss(p):
    return jnp.sum(model.apply({"params": p}, **inputs)["logits"] ** 2)

  grads = jax.jit(jax.grad(loss))(params)
  stem_grad = grads["vilt"]["embeddings"]["stem_conv_0"]["kernel"]
  assert float(jnp.abs(stem_grad).sum()) > 0
  saved.save_model(tmp_path / "m", config, params)
  reloaded, variables = saved.load_model(tmp_path / "m")
  assert reloaded.config.patch_stem == "conv"
  np.testing.assert_allclose(
      reloaded.apply(variables, **inputs)["logits"],
      model.apply({"params": params}, **inputs)["logits"], atol=1e-6)


@pytest.mark.parametrize("options, message", [
    (dict(patch_stem="convnext"), "patch_stem='convnext' must be one of"),
    (dict(patch_stem="conv", patch_size=12, image_size=48),
     "patch_size must be a power of two"),
])
def test_bad_stem_settings_are_named(options, message):
  with pytest.raises(ValueError, match=message):
    ViltConfig(**dict(SMALL, **options))
