"""Assignment: one matching, applied as a sum, a weighted mean, a plain mean."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax.reduce import Assignment, bipartite_matching
from pumer_jax.reduce.assign import keep_only

# Five slots: 0 and 2 survive; 1 folds into 0, 3 and 4 into an extra slot.
ASSIGNMENT = Assignment(keep=jnp.array([[0, 2]]), src=jnp.array([[1, 3, 4]]),
                        dst=jnp.array([[0, 2, 2]]), extra=1)
X = jnp.array([[[1.0], [3.0], [10.0], [5.0], [7.0]]])  # [1, 5, 1]


@pytest.mark.parametrize("scatter", ["segment_sum", "at_add", "one_hot"])
def test_sum_mean_and_weighted_mean_by_hand(scatter):
  assert ASSIGNMENT.length == 3
  np.testing.assert_allclose(ASSIGNMENT.sum(X, scatter)[0, :, 0],
                             [1 + 3, 10, 5 + 7])
  np.testing.assert_allclose(ASSIGNMENT.received(scatter)[0], [1, 0, 2])
  np.testing.assert_allclose(ASSIGNMENT.mean(X, scatter)[0, :, 0],
                             [2, 10, 6])
  size = jnp.array([[1.0, 3.0, 2.0, 1.0, 0.0]])
  x, total = ASSIGNMENT.weighted_mean(X, size, scatter)
  np.testing.assert_allclose(total[0], [4, 2, 1])
  np.testing.assert_allclose(x[0, :, 0], [(1 + 9) / 4, 10, 5])


def test_untouched_slots_keep_their_exact_values():
  x = jnp.array([[[0.1], [0.7], [0.3]]], jnp.float32)
  weights = jnp.array([[3.0, 1.0, 7.0]])  # x*w/w would round
  kept = keep_only(jnp.array([[2, 0]]))
  out, total = kept.weighted_mean(x, weights)
  assert out[0, 0, 0] == x[0, 2, 0] and out[0, 1, 0] == x[0, 0, 0]
  np.testing.assert_allclose(total[0], [7, 3])


def test_bipartite_matching_is_a_static_assignment_under_jit():
  rng = np.random.default_rng(0)
  metric = jnp.asarray(rng.normal(size=(2, 7, 4)), jnp.float32)
  match = jax.jit(lambda m: bipartite_matching(m, 2))(metric)
  assert match.keep.shape == (2, 5) and match.src.shape == (2, 2)
  assert match.length == 5
  # Every input slot lands in exactly one output slot; slot 0 stays first.
  for b in range(2):
    placed = sorted(np.concatenate([match.keep[b], match.src[b]]).tolist())
    assert placed == list(range(7)) and int(match.keep[b, 0]) == 0
    assert set(np.asarray(match.src[b]) % 2) == {0}  # A tokens merge


def test_tokens_join_keeps_a_one_sided_policy():
  """DynamicViT's policy covers the image only; joined with the text it
  must cover the whole stream (ones on the text), not vanish."""
  from pumer_jax.reduce import Tokens
  text = Tokens(jnp.zeros((1, 2, 3)), jnp.ones((1, 2)))
  image = Tokens(jnp.zeros((1, 3, 3)), jnp.ones((1, 3)),
                 policy=jnp.array([[1.0, 0.0, 1.0]]))
  joined = text.join(image)
  np.testing.assert_allclose(joined.policy, [[1, 1, 1, 0, 1]])
  assert text.join(text).policy is None
  with pytest.raises(ValueError, match="source map"):
    text.join(image._replace(source=jnp.zeros((1, 3, 5))))
