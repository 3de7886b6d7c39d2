"""The fused kernel beside recomputed probability rows: exact parity with
the explicit softmax path, at the attention and through whole models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax.models import ReduceConfig, Vilt, ViltConfig
from pumer_jax.models import layers as layers_lib
from pumer_jax.models.layers import MultiHeadAttention
from pumer_jax.models.vilt import example_inputs


def _attention_inputs(seed=0, batch=2, tokens=12):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(batch, tokens, 32)), jnp.float32)
  # Sizes as a merge leaves them, padded text keys (0) included.
  size = rng.integers(1, 4, size=(batch, tokens)).astype(np.float32)
  size[0, 3:5] = 0.0
  size[1, 1] = 0.0
  return x, jnp.asarray(size)


@pytest.mark.parametrize("rows", [slice(0, 5), slice(5, 6), slice(0, 12)])
@pytest.mark.parametrize("prop_attn", [True, False])
def test_recomputed_rows_match_the_explicit_probabilities(rows, prop_attn):
  mha = MultiHeadAttention(num_heads=4, hidden_size=32, prop_attn=prop_attn)
  x, size = _attention_inputs()
  params = mha.init(jax.random.PRNGKey(0), x, size)
  explicit, e_aux = mha.apply(params, x, size, fused=False)
  fused, f_aux = mha.apply(params, x, size, prob_rows=rows, fused=True)
  np.testing.assert_allclose(fused, explicit, atol=1e-5, rtol=1e-5)
  assert f_aux["prob_rows"] == rows and "prob_rows" not in e_aux
  np.testing.assert_allclose(f_aux["probs"], e_aux["probs"][:, :, rows],
                             atol=1e-6, rtol=1e-5)


def test_the_explicit_path_stays_where_the_kernel_cannot_follow():
  x, size = _attention_inputs()
  for mha, kwargs in (
      (MultiHeadAttention(4, 32, official_softmax=True), {}),
      (MultiHeadAttention(4, 32, dropout_rate=0.1),
       dict(deterministic=False)),
      (MultiHeadAttention(4, 32), dict(key_policy=jnp.ones(size.shape))),
  ):
    params = mha.init(jax.random.PRNGKey(0), x, size)
    _, aux = mha.apply(params, x, size, prob_rows=slice(0, 5), fused=True,
                       rngs={"dropout": jax.random.PRNGKey(1)}, **kwargs)
    assert "prob_rows" not in aux and aux["probs"].shape[2] == 12


CONFIG = ViltConfig(vocab_size=30, hidden_size=32, num_hidden_layers=3,
                    num_attention_heads=4, intermediate_size=64,
                    max_position_embeddings=8, image_size=32, patch_size=8,
                    num_labels=5)
METHODS = {
    "pumer_sized": ReduceConfig(method="pumer", semantics="sized",
                                layers=(0, 1), prune_ratio=0.2,
                                image_merge_ratio=0.3, text_merge_ratio=0.3),
    "pumer_official": ReduceConfig(method="pumer", layers=(0, 1),
                                   prune_ratio=0.2, image_merge_ratio=0.3,
                                   text_merge_ratio=0.3),
    "evit": ReduceConfig(method="evit", layers=(1,), keep_rate=0.5),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_model_on_a_fused_backend_computes_what_the_explicit_one_does(
    name, monkeypatch):
  config = CONFIG.replace(reduce=METHODS[name])
  model = Vilt(config)
  inputs = {k: jnp.asarray(v) for k, v in example_inputs(config, 2, 8).items()}
  rng = np.random.default_rng(3)
  inputs["input_ids"] = jnp.asarray(rng.integers(1, 30, (2, 8)), jnp.int32)
  inputs["attention_mask"] = jnp.asarray([[1] * 8, [1] * 5 + [0] * 3])
  inputs["pixel_values"] = jnp.asarray(rng.normal(size=(2, 32, 32, 3)),
                                       jnp.float32)
  variables = model.init(jax.random.PRNGKey(0), **inputs)
  explicit = model.apply(variables, **inputs, track_source=True)
  backend = jax.default_backend()
  monkeypatch.setattr(layers_lib, "FUSED_ATTENTION_BACKENDS", {backend})
  queries = []  # the query rows of every explicit softmax the model ran
  logits = layers_lib._logits
  monkeypatch.setattr(layers_lib, "_logits", lambda q, k, d: (
      queries.append(q.shape[1]), logits(q, k, d))[1])
  fused = model.apply(variables, **inputs, track_source=True)
  # Only the reduction layers score; with the official softmax every layer
  # after the first reduction keeps the explicit path.
  assert queries == {"pumer_sized": [8, 6], "evit": [1],
                     "pumer_official": [25, 15, 8]}[name]
  np.testing.assert_allclose(fused["logits"], explicit["logits"],
                             atol=1e-5, rtol=1e-5)
  np.testing.assert_array_equal(fused["source"], explicit["source"])
