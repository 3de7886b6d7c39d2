"""EViT: keep the image tokens the image [CLS] attends to most, fuse the rest."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax.models import Meter, MeterConfig, Vilt, ViltConfig
from pumer_jax.reduce import Geometry, ReduceConfig, Tokens, init_source
from pumer_jax.reduce.methods.evit import fuse_inattentive


def test_counts_follow_the_reference():
  """ceil(keep_rate * patches) patches stay, one fused token joins them; a
  rate that keeps every patch reduces nothing (the reference returns then)."""
  evit = ReduceConfig(method="evit", layers=(3, 6, 9), keep_rate=0.7)
  s = evit.schedule(Geometry("vilt", 12, 145, 32))
  # 144 -> ceil(100.8) = 101 (+CLS +fused = 103); 102 -> 72 (74); 73 -> 52.
  assert [(x.keep, x.image_out) for x in s.steps] == [(102, 103), (73, 74),
                                                     (53, 54)]
  assert s.tokens_in(12) == 54 + 32
  plain = evit.replace(fuse=False).schedule(Geometry("vilt", 12, 145, 32))
  assert [x.image_out for x in plain.steps] == [102, 72, 51]
  assert ReduceConfig(method="evit", layers=(0,), keep_rate=1.0).schedule(
      Geometry("vilt", 2, 17, 4)).steps == ()
  for bad in (0.0, 1.5, True):
    with pytest.raises(ValueError, match="keep_rate"):
      ReduceConfig(method="evit", layers=(0,), keep_rate=bad)


def test_fusion_by_hand():
  # One example: [CLS, a, b, c, d]; the [CLS] attends 0.1, 0.4, 0.2, 0.3.
  x = jnp.array([[[9.0], [1.0], [2.0], [3.0], [4.0]]])
  size = jnp.ones((1, 5))
  attn = jnp.array([[0.1, 0.4, 0.2, 0.3]])
  out = fuse_inattentive(Tokens(x, size, init_source(1, 5)), attn, 2, True)
  # Kept: CLS, then b (0.4) and d (0.3); fused: 0.1 * a + 0.2 * c.
  np.testing.assert_allclose(out.x[0, :, 0], [9, 2, 4, 0.1 * 1 + 0.2 * 3],
                             rtol=1e-6)
  np.testing.assert_allclose(out.size[0], [1, 1, 1, 2])
  # The fused token keeps no patch of its own: its source row is empty.
  np.testing.assert_allclose(out.source[0], [[1, 0, 0, 0, 0], [0, 0, 1, 0, 0],
                                             [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]])
  dropped = fuse_inattentive(Tokens(x, size), attn, 2, False)
  np.testing.assert_allclose(dropped.x[0, :, 0], [9, 2, 4])


def _vilt(reduce):
  return ViltConfig(vocab_size=30, hidden_size=32, num_hidden_layers=3,
                    num_attention_heads=4, intermediate_size=64, image_size=32,
                    patch_size=8, max_position_embeddings=8, num_labels=5,
                    attention_probs_dropout_prob=0.1, reduce=reduce)


def _inputs():
  rng = np.random.default_rng(0)
  mask = np.ones((2, 6), np.int32)
  mask[1, 4:] = 0
  return dict(input_ids=rng.integers(1, 30, (2, 6)).astype(np.int32),
              attention_mask=mask,
              pixel_values=rng.normal(size=(2, 32, 32, 3)).astype(np.float32))


def test_vilt_keeps_what_its_image_cls_attends_to():
  """The kept patches are the top ones of the image [CLS] row of the
  layer's attention, recomputed here from the unreduced model."""
  reduce = ReduceConfig(method="evit", layers=(1,), keep_rate=0.5)
  model, plain = Vilt(_vilt(reduce)), Vilt(_vilt(ReduceConfig()))
  inputs = _inputs()
  variables = plain.init(jax.random.PRNGKey(0), **inputs)
  full = plain.apply(variables, **inputs, output_attentions=True)
  out = model.apply(variables, **inputs, track_source=True)
  row = np.asarray(full["attentions"][1])[:, :, 6, 7:].mean(1)  # [B, 16]
  source = np.asarray(out["sources"][0])[:, 6:, 6:]  # image slots x image
  for b in range(2):
    want = 1 + np.argsort(-row[b], kind="stable")[:8]
    kept = [int(np.argmax(source[b, k])) for k in range(1, 9)]
    assert kept == want.tolist()
    assert source[b, 9].sum() == 0  # the fused token: a summary, no patch
  np.testing.assert_allclose(out["size"][:, -1], 8)  # of the other 8
  assert out["image_tokens"].tolist() == [17, 17, 10, 10]


@pytest.mark.parametrize("arch", ["vilt", "meter"])
def test_jit_grad_and_counts(arch):
  reduce = ReduceConfig(method="evit", layers=(0, 1), keep_rate=0.6)
  if arch == "vilt":
    config = _vilt(reduce)
    module = Vilt(config)
  else:
    config = MeterConfig(
        vision_hidden_size=32, vision_num_layers=1, vision_num_heads=2,
        vision_intermediate_size=64, image_size=32, patch_size=8,
        text_hidden_size=32, text_num_layers=1, text_num_heads=2,
        text_intermediate_size=64, hidden_size=32, num_fusion_layers=2,
        num_attention_heads=4, intermediate_size=64, vocab_size=30,
        max_position_embeddings=10, num_labels=5,
        attention_probs_dropout_prob=0.1, reduce=reduce)
    module = Meter(config)
  inputs = _inputs()
  variables = module.init(jax.random.PRNGKey(0), **inputs)
  traces = []

  @jax.jit
  def loss(v, rng):
    traces.append(1)
    out = module.apply(v, **inputs, train=True, rngs={"dropout": rng})
    return (out["logits"] ** 2).mean(), out["image_tokens"]

  (value, image_tokens), grads = jax.value_and_grad(loss, has_aux=True)(
      variables, jax.random.PRNGKey(1))
  loss(variables, jax.random.PRNGKey(2))
  assert len(traces) == 1 and np.isfinite(float(value))
  # 16 patches -> ceil(9.6) = 10 (+CLS +fused = 12) -> 11 patches -> 7 (9).
  assert image_tokens.tolist()[-1] == 9
  assert all(bool(jnp.all(jnp.isfinite(g)))
             for g in jax.tree_util.tree_leaves(grads))
