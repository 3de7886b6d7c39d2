"""bipartite_merge against a loop-level numpy reference and conservation laws."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax.reduce import bipartite_merge, init_source, merge_cap

SCATTERS = ("segment_sum", "at_add", "one_hot")


def reference_merge(x, metric, size, r, protect_first):
  """ToMe bipartite matching for one sequence, written from the algorithm.

  Plain loops, no vectorisation: A = even positions, B = odd positions;
  cosine scores; each A token picks its best B; the r A tokens with the best
  scores merge into their partners by size-weighted mean; the output is the
  unmerged A tokens in original order, then B.
  """
  n = len(x)
  unit = metric / np.linalg.norm(metric, axis=-1, keepdims=True)
  a_pos, b_pos = list(range(0, n, 2)), list(range(1, n, 2))
  best = []
  for k, i in enumerate(a_pos):
    row = []
    for j in b_pos:
      if size[i] == 0 and size[j] == 0:
        s = 1e4
      elif (size[i] == 0) != (size[j] == 0):
        s = -1e4
      else:
        s = float(unit[i] @ unit[j])
      row.append(s)
    if protect_first and k == 0:
      row = [-np.inf] * len(b_pos)
    j_best = int(np.argmax(row))
    best.append((row[j_best], k, j_best))
  ranked = sorted(best, key=lambda t: -t[0])  # stable: ties keep A order
  merged, unmerged = ranked[:r], sorted(ranked[r:], key=lambda t: t[1])
  incoming = {j: [] for j in range(len(b_pos))}
  for _, k, j in merged:
    incoming[j].append(a_pos[k])
  out_x = [x[a_pos[k]] for _, k, _ in unmerged]
  out_s = [size[a_pos[k]] for _, k, _ in unmerged]
  for j, b in enumerate(b_pos):
    members = [b] + incoming[j]
    total = sum(size[m] for m in members)
    if not incoming[j]:
      out_x.append(x[b])
    elif total > 0:
      out_x.append(sum(x[m] * size[m] for m in members) / total)
    else:
      out_x.append(np.zeros_like(x[b]))
    out_s.append(total)
  return np.stack(out_x), np.array(out_s)


def random_tokens(rng, batch, n, dim, pad_frac=0.0):
  x = rng.normal(size=(batch, n, dim)).astype(np.float32)
  metric = rng.normal(size=(batch, n, 8)).astype(np.float32)
  size = rng.integers(1, 4, size=(batch, n)).astype(np.float32)
  if pad_frac:
    pad = rng.random((batch, n)) < pad_frac
    pad[:, 0] = False  # the CLS slot is real
    size[pad] = 0.0
  return x, metric, size


@pytest.mark.parametrize("scatter", SCATTERS)
@pytest.mark.parametrize("protect_first", [True, False])
@pytest.mark.parametrize("n,r,pad_frac", [(9, 3, 0.0), (16, 7, 0.0),
                                           (15, 5, 0.4), (12, 5, 0.5)])
def test_matches_numpy_reference(scatter, protect_first, n, r, pad_frac):
  rng = np.random.default_rng(n * 100 + r)
  x, metric, size = random_tokens(rng, 3, n, 5, pad_frac)
  got_x, got_s, *_ = bipartite_merge(
      jnp.asarray(x), jnp.asarray(metric), jnp.asarray(size), r,
      protect_first=protect_first, scatter=scatter,
  )
  for b in range(3):
    want_x, want_s = reference_merge(x[b], metric[b], size[b], r,
                                     protect_first)
    np.testing.assert_allclose(got_s[b], want_s, rtol=0, atol=0)
    np.testing.assert_allclose(got_x[b], want_x, rtol=1e-6, atol=1e-6)


def test_hand_computed_merge():
  # Tokens 0..3: A = {0, 2}, B = {1, 3}. Metric makes 2 closest to 3.
  x = jnp.array([[[10.0], [1.0], [2.0], [4.0]]])
  metric = jnp.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.1]]])
  size = jnp.array([[1.0, 1.0, 1.0, 3.0]])
  out_x, out_s, *_ = bipartite_merge(x, metric, size, 1)
  # CLS (0) is protected, so 2 merges into 3: (2*1 + 4*3) / 4 = 3.5.
  np.testing.assert_allclose(out_x[0, :, 0], [10.0, 1.0, 3.5])
  np.testing.assert_allclose(out_s[0], [1.0, 1.0, 4.0])


@hypothesis.settings(max_examples=12, deadline=None)
@hypothesis.given(
    n=st.integers(3, 24), dim=st.integers(1, 6), data=st.data(),
    seed=st.integers(0, 2**16), protect=st.booleans(),
    pad_frac=st.sampled_from([0.0, 0.3, 0.7]),
)
def test_conservation_and_padding(n, dim, data, seed, protect, pad_frac):
  r = data.draw(st.integers(0, merge_cap(n, protect)))
  rng = np.random.default_rng(seed)
  x, metric, size = random_tokens(rng, 2, n, dim, pad_frac)
  x[size == 0] = 1e6  # garbage in padding slots must never leak
  source = init_source(2, n)
  out_x, out_s, out_src, _ = bipartite_merge(
      jnp.asarray(x), jnp.asarray(metric), jnp.asarray(size), r,
      protect_first=protect, source=source,
  )
  assert out_x.shape == (2, n - r, dim) and out_s.shape == (2, n - r)
  assert out_src.shape == (2, n - r, n)
  np.testing.assert_allclose(out_s.sum(-1), size.sum(-1), rtol=1e-6)
  real = size > 0
  weighted = (np.where(real, size, 0)[..., None] * np.where(real[..., None],
                                                           x, 0)).sum(1)
  out_real = np.asarray(out_s) > 0
  got = (np.asarray(out_s)[..., None] * np.where(out_real[..., None],
                                                 np.asarray(out_x), 0)).sum(1)
  np.testing.assert_allclose(got, weighted, rtol=1e-4, atol=1e-3)
  # Every original token lies in exactly one slot; sizes follow the sources.
  np.testing.assert_array_equal(np.asarray(out_src).sum(1), np.ones((2, n)))
  np.testing.assert_allclose(np.einsum("bsn,bn->bs", out_src, size), out_s)
  # Each real slot is the size-weighted mean of the real tokens it holds.
  src_w = np.asarray(out_src) * size[:, None, :]
  expected = np.einsum("bsn,bnd->bsd", src_w, np.where(real[..., None], x, 0))
  expected /= np.maximum(src_w.sum(-1, keepdims=True), 1e-9)
  np.testing.assert_allclose(np.asarray(out_x)[out_real], expected[out_real],
                             rtol=1e-4, atol=1e-4)
  if protect:
    np.testing.assert_array_equal(out_x[:, 0], x[:, 0])
    np.testing.assert_array_equal(out_s[:, 0], size[:, 0])


def test_r_zero_is_identity():
  rng = np.random.default_rng(0)
  x, metric, size = map(jnp.asarray, random_tokens(rng, 2, 7, 3))
  out_x, out_s, *_ = bipartite_merge(x, metric, size, 0)
  assert out_x is x and out_s is size


def test_rejects_r_past_cap():
  x = jnp.zeros((1, 5, 2))
  with pytest.raises(ValueError, match="r=3"):
    bipartite_merge(x, x, jnp.ones((1, 5)), 3)
  with pytest.raises(ValueError, match="Python int"):
    bipartite_merge(x, x, jnp.ones((1, 5)), jnp.int32(1))


@pytest.mark.parametrize("scatter", SCATTERS)
def test_jit_vmap_grad_and_no_retrace(scatter):
  traces = []

  @jax.jit
  def f(x, metric, size):
    traces.append(1)
    out_x, out_s, *_ = bipartite_merge(x, metric, size, 4, scatter=scatter)
    return (out_x * out_s[..., None]).sum(), out_x

  rng = np.random.default_rng(1)
  args = tuple(map(jnp.asarray, random_tokens(rng, 2, 11, 4, 0.3)))
  f(*args)
  f(*map(jnp.asarray, random_tokens(rng, 2, 11, 4, 0.3)))
  assert len(traces) == 1

  grad = jax.grad(lambda x: f(x, *args[1:])[0])(args[0])
  assert grad.shape == args[0].shape and bool(jnp.all(jnp.isfinite(grad)))
  # The weighted sum is linear in x with coefficients size: d/dx = size.
  np.testing.assert_allclose(grad, np.broadcast_to(args[2][..., None],
                                                   grad.shape), rtol=1e-6)

  batched = jax.vmap(lambda x, m, s: bipartite_merge(x, m, s, 4,
                                                     scatter=scatter))
  stacked = tuple(jnp.stack([a, a]) for a in args)
  out_x = batched(*stacked).x
  np.testing.assert_allclose(out_x[0], f(*args)[1], rtol=1e-6)


def test_bfloat16_tokens_keep_dtype():
  rng = np.random.default_rng(2)
  x, metric, size = random_tokens(rng, 2, 10, 4)
  out_x, out_s, *_ = bipartite_merge(jnp.asarray(x, jnp.bfloat16),
                                 jnp.asarray(metric), jnp.asarray(size), 3)
  assert out_x.dtype == jnp.bfloat16 and out_s.dtype == jnp.float32
