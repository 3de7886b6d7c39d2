"""Every public function of `pumer_jax.reduce` takes numpy arrays, in
float16, bfloat16 or float32, exactly as it takes jax arrays."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np

from pumer_jax import reduce

DTYPES = (np.float16, jnp.bfloat16, np.float32)


def same(got, want):
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert isinstance(g, jax.Array)
    assert g.dtype == w.dtype and g.shape == w.shape
    np.testing.assert_array_equal(np.asarray(g, np.float32),
                                  np.asarray(w, np.float32))


def calls(rng, dtype, batch, n, r_frac):
  """(name, function, numpy args, kwargs) for every public array function."""
  a = lambda *shape: rng.standard_normal(shape).astype(dtype)
  size = np.ones((batch, n), dtype)
  size[:, -1] = 0  # one padded slot
  probs = rng.random((batch, 2, 3, n)).astype(dtype)
  r = int(r_frac * reduce.merge_cap(n))
  keep = max(1, n - r)
  log_probs = np.log(rng.dirichlet((1, 1), (batch, n))).astype(dtype)
  return [
      ("bipartite_merge", reduce.bipartite_merge,
       (a(batch, n, 4), a(batch, n, 3), size, r),
       dict(source=reduce.init_source(batch, n))),
      ("bipartite_matching", reduce.bipartite_matching,
       (a(batch, n, 3), r), dict(size=size)),
      ("topk_keep", reduce.topk_keep, (a(batch, n, 4), size, a(batch, n), keep),
       {}),
      ("text_image_scores", reduce.text_image_scores,
       (probs, np.ones((batch, 3), dtype)), {}),
      ("text_informed_prune", reduce.text_informed_prune,
       (a(batch, n, 4), size, probs, np.ones((batch, 3), dtype), keep), {}),
      ("policy_weighted_mean", reduce.policy_weighted_mean,
       (a(batch, n, 4), (size > 0).astype(dtype)), {}),
      ("gumbel_hard_keep", reduce.gumbel_hard_keep,
       (jax.random.PRNGKey(0), log_probs), {}),
      ("keep_ratio_loss", reduce.keep_ratio_loss,
       ([rng.random(batch).astype(dtype)], [0.5]), {}),
  ]


@hypothesis.settings(max_examples=5, deadline=None)
@hypothesis.given(dtype=st.sampled_from(DTYPES), batch=st.integers(1, 2),
                  n=st.integers(3, 9), r_frac=st.floats(0.0, 1.0),
                  seed=st.integers(0, 2**16))
def test_numpy_inputs_of_every_float_dtype(dtype, batch, n, r_frac, seed):
  rng = np.random.default_rng(seed)
  for name, fn, args, kwargs in calls(rng, dtype, batch, n, r_frac):
    as_jax = [jnp.asarray(v) if isinstance(v, np.ndarray) else v
              for v in args]
    want = fn(*as_jax, **kwargs)
    got = fn(*args, **kwargs)
    same(got, want)
    floats = [v for v in jax.tree.leaves(got) if jnp.issubdtype(v.dtype,
                                                                 jnp.floating)]
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in floats), name


def test_every_public_array_function_is_covered():
  """A new public function of pumer_jax.reduce joins the list above."""
  covered = {name for name, *_ in calls(np.random.default_rng(0), np.float32,
                                          1, 5, 0.5)}
  not_arrays = {"ReduceConfig", "ReductionSchedule", "LayerCounts",
                "init_source", "merge_cap", "METHODS", "method_class",
                "register", "methods", "Assignment", "Tokens", "Where",
                "Needs", "Param", "Geometry", "Context", "AttentionRule",
                "AttentionView"}
  assert set(reduce.__all__) - not_arrays == covered
