"""text_informed_prune and topk_keep on hand-built attention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax.reduce import text_image_scores, text_informed_prune, topk_keep


def _attention(batch=1, heads=2, text=3, image=5):
  return np.zeros((batch, heads, text, image), np.float32)


def test_scores_average_only_real_text_rows():
  attn = _attention()
  attn[0, 0, 0] = [0.0, 0.1, 0.5, 0.2, 0.2]
  attn[0, 1, 0] = [0.0, 0.3, 0.3, 0.2, 0.2]
  attn[0, :, 1] = [0.0, 0.2, 0.2, 0.6, 0.0]
  attn[0, :, 2] = [0.0, 0.0, 0.0, 0.0, 1.0]  # padded row: must not vote
  text_size = np.array([[1.0, 1.0, 0.0]])
  scores = text_image_scores(jnp.asarray(attn), jnp.asarray(text_size))
  # Head mean of row 0: [0, .2, .4, .2, .2]; row 1: [0, .2, .2, .6, 0].
  np.testing.assert_allclose(scores[0], [0.0, 0.2, 0.3, 0.4, 0.1], atol=1e-7)


def test_prune_keeps_top_tokens_and_cls():
  attn = _attention()
  attn[0, :, :2] = [0.0, 0.1, 0.5, 0.3, 0.1]
  attn[0, :, 2] = [0.0, 0.0, 0.0, 0.0, 1.0]  # padding prefers token 4
  x = jnp.arange(5, dtype=jnp.float32).reshape(1, 5, 1) * 10
  size = jnp.array([[1.0, 2.0, 1.0, 1.0, 3.0]])
  out_x, out_s, *_ = text_informed_prune(x, size, jnp.asarray(attn),
                                     jnp.array([[1.0, 1.0, 0.0]]), keep=3)
  # CLS (score 0) kept first, then tokens 2 and 3 by score; 4 is dropped.
  np.testing.assert_array_equal(out_x[0, :, 0], [0.0, 20.0, 30.0])
  np.testing.assert_array_equal(out_s[0], [1.0, 1.0, 1.0])
  unprotected, _, *_ = text_informed_prune(
      x, size, jnp.asarray(attn), jnp.array([[1.0, 1.0, 0.0]]), keep=3,
      protect_cls=False)
  np.testing.assert_array_equal(unprotected[0, :, 0], [20.0, 30.0, 10.0])


def test_padding_never_displaces_real_tokens():
  x = jnp.ones((1, 4, 2))
  size = jnp.array([[1.0, 0.0, 1.0, 1.0]])
  scores = jnp.array([[0.0, 5.0, 0.0, 0.0]])  # padding scores high
  _, out_s, *_ = topk_keep(x, size, scores, 3)
  np.testing.assert_array_equal(out_s, [[1.0, 1.0, 1.0]])


def test_keep_all_is_identity_and_bad_keep_raises():
  x = jnp.ones((2, 4, 3))
  size = jnp.ones((2, 4))
  attn = jnp.ones((2, 1, 2, 4)) / 4
  out_x, out_s, *_ = text_informed_prune(x, size, attn, jnp.ones((2, 2)), keep=4)
  assert out_x is x and out_s is size
  for bad in (0, 5):
    with pytest.raises(ValueError, match="keep"):
      text_informed_prune(x, size, attn, jnp.ones((2, 2)), keep=bad)
  with pytest.raises(ValueError, match="image columns"):
    text_informed_prune(x, size, attn[..., :3], jnp.ones((2, 2)), keep=2)


def test_source_follows_and_grad_flows_to_kept_tokens():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 6, 3)), jnp.float32)
  attn = jax.nn.softmax(jnp.asarray(rng.normal(size=(2, 2, 4, 6))), -1)
  text_size = jnp.array([[1.0, 1, 1, 0], [1, 1, 0, 0]])
  source = jnp.broadcast_to(jnp.eye(6), (2, 6, 6))
  out_x, _, out_src, _ = text_informed_prune(x, jnp.ones((2, 6)), attn,
                                          text_size, 4, source=source)
  np.testing.assert_allclose(jnp.einsum("bkn,bnd->bkd", out_src, x), out_x)

  @jax.jit
  def loss(x):
    return text_informed_prune(x, jnp.ones((2, 6)), attn, text_size, 4)[0].sum()

  grad = jax.grad(loss)(x)
  # Gradient 1 on the 4 kept tokens of each example, 0 on the pruned ones.
  np.testing.assert_array_equal(grad[..., 0].sum(-1), [4.0, 4.0])
  np.testing.assert_array_equal(grad[..., 0], out_src.sum(1))
