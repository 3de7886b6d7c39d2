"""Hard-concrete gates against their closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax.compress import hard_concrete as hc


def closed_form_zero(log_alpha):
  """P(z = 0) = P(s <= -gamma / (zeta - gamma)) for the binary concrete s."""
  t = -hc.GAMMA / (hc.ZETA - hc.GAMMA)
  return 1.0 / (1.0 + math.exp(log_alpha - hc.BETA * math.log(t / (1 - t))))


def closed_form_one(log_alpha):
  """P(z = 1) = P(s >= (1 - gamma) / (zeta - gamma))."""
  t = (1 - hc.GAMMA) / (hc.ZETA - hc.GAMMA)
  return 1.0 - 1.0 / (1.0 + math.exp(
      log_alpha - hc.BETA * math.log(t / (1 - t))))


@pytest.mark.parametrize("log_alpha", [-2.0, 0.0, 1.5])
def test_sampled_exact_zeros_and_ones_match_the_closed_form(log_alpha):
  n = 200_000
  z = np.asarray(hc.sample(jax.random.PRNGKey(0),
                           jnp.full((n,), log_alpha)))
  assert z.min() >= 0.0 and z.max() <= 1.0
  for observed, expected in ((np.mean(z == 0.0), closed_form_zero(log_alpha)),
                             (np.mean(z == 1.0), closed_form_one(log_alpha))):
    sigma = math.sqrt(expected * (1 - expected) / n)
    assert abs(observed - expected) < 5 * sigma + 1e-4
  # prob_nonzero is exactly 1 - P(z = 0).
  np.testing.assert_allclose(hc.prob_nonzero(jnp.float32(log_alpha)),
                             1 - closed_form_zero(log_alpha), rtol=1e-5)


def test_gradients_reach_log_alpha():
  log_alpha = jnp.zeros((4, 8))
  g_sample = jax.grad(lambda a: hc.sample(jax.random.PRNGKey(1), a).sum())(
      log_alpha)
  g_prob = jax.grad(lambda a: hc.prob_nonzero(a).sum())(log_alpha)
  assert np.abs(np.asarray(g_sample)).sum() > 0
  assert (np.asarray(g_prob) > 0).all()  # more alpha, more expected size


def test_deterministic_mask_zeroes_the_expected_count_smallest_first():
  log_alpha = jnp.array([[5.0, -5.0, 4.0, -4.0, 3.0],
                         [9.0, 9.0, 9.0, 9.0, -9.0]])
  mask = np.asarray(jax.jit(hc.deterministic_mask)(log_alpha))
  p = np.asarray(hc.prob_nonzero(log_alpha))
  for row in range(2):
    zeros = round(5 - p[row].sum())
    assert (mask[row] == 0).sum() == zeros
  np.testing.assert_array_equal(mask[0], [1, 0, 1, 0, 1])
  np.testing.assert_array_equal(mask[1], [1, 1, 1, 1, 0])


def test_clip_range():
  clipped = hc.clip_log_alpha(jnp.array([-10.0, 0.0, 10.0]))
  np.testing.assert_allclose(clipped, [math.log(0.01), 0.0, math.log(100.0)],
                             rtol=1e-6)
