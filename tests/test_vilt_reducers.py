"""ViLT with reducers: identities, schedules, compilation, gradients, errors."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax.models import ReduceConfig, Vilt, ViltConfig
from pumer_jax.models import layers as layers_lib
from pumer_jax.models.layers import MultiHeadAttention

BASE = ViltConfig(
    vocab_size=50, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
    intermediate_size=64, max_position_embeddings=12, image_size=64,
    patch_size=16, num_labels=5, hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)
REDUCERS = {
    "none": ReduceConfig(),
    "pumer": ReduceConfig(method="pumer", layers=(1, 2), prune_ratio=0.2,
                          image_merge_ratio=0.3, text_merge_ratio=0.2,
                          semantics="sized"),
    "pumer_official": ReduceConfig(
        method="pumer", layers=(1, 2), prune_ratio=0.2,
        image_merge_ratio=0.3, text_merge_ratio=0.2, score_heads="first"),
    "tome": ReduceConfig(method="tome", tome_r=4),
    "dynamicvit": ReduceConfig(method="dynamicvit", layers=(1, 2),
                               keep_ratios=(0.7, 0.5)),
    "smres": ReduceConfig(method="smres", smres_size=(32, 48)),
}


def batch(seed=0, n=3, length=10, hw=(64, 96)):
  rng = np.random.default_rng(seed)
  mask = np.ones((n, length), np.int32)
  mask[1, 7:] = 0
  mask[2, 4:] = 0
  return dict(
      input_ids=jnp.asarray(rng.integers(1, 50, (n, length)), jnp.int32),
      attention_mask=jnp.asarray(mask),
      pixel_values=jnp.asarray(rng.normal(size=(n,) + hw + (3,)), jnp.float32),
  )


@pytest.fixture(scope="module")
def params():
  model = Vilt(BASE.replace(reduce=REDUCERS["dynamicvit"]))
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), **batch())
  return flax.linen.meta.unbox(variables)["params"]


def jit_apply(model, variables, inputs, **kw):
  """model.apply under one jit: far fewer compilations than eager mode."""
  return jax.jit(functools.partial(model.apply, **kw))(variables, **inputs)


def base_params(params):
  """The unreduced model's parameters: everything but the keep predictors."""
  scope = REDUCERS["dynamicvit"].param_name
  vilt = {k: v for k, v in params["vilt"].items()
          if not k.startswith(scope)}
  return {**params, "vilt": vilt}


def apply(method, params, inputs, **kw):
  model = Vilt(BASE.replace(reduce=REDUCERS[method]))
  p = params if method == "dynamicvit" else base_params(params)
  return jit_apply(model, {"params": p}, inputs, **kw)


def test_zero_ratios_equal_unreduced(params):
  inputs = batch()
  want = apply("none", params, inputs)
  for reduce in (
      ReduceConfig(method="pumer", layers=(0, 1, 3), semantics="sized"),
      ReduceConfig(method="tome", tome_r=0),
      ReduceConfig(method="dynamicvit", layers=(1, 2), keep_ratios=(1.0, 1.0)),
  ):
    model = Vilt(BASE.replace(reduce=reduce))
    p = params if reduce.method == "dynamicvit" else base_params(params)
    got = jit_apply(model, {"params": p}, inputs)
    np.testing.assert_allclose(got["logits"], want["logits"], atol=1e-6)
    assert got["tokens"].tolist() == want["tokens"].tolist()


def test_proportional_attention_equals_duplicated_keys():
  """A key of size 2 attends as two copies of itself (ToMe's argument)."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(1, 4, 16)), jnp.float32)
  attn = MultiHeadAttention(num_heads=2, hidden_size=16)
  v = attn.init(jax.random.PRNGKey(0), x, jnp.ones((1, 4)))
  dup = jnp.concatenate([x, x[:, 3:]], axis=1)
  out_dup, _ = attn.apply(v, dup, jnp.ones((1, 5)))
  out_sized, _ = attn.apply(v, x, jnp.array([[1.0, 1.0, 1.0, 2.0]]))
  np.testing.assert_allclose(out_sized, out_dup[:, :4], atol=1e-5)
  # Size 0 is exactly a masked key; prop_attn off ignores sizes > 0.
  out_masked, _ = attn.apply(v, dup, jnp.array([[1.0, 1, 1, 1, 0]]))
  out_plain, _ = attn.apply(v, x, jnp.ones((1, 4)))
  np.testing.assert_allclose(out_masked[:, :4], out_plain, atol=1e-6)
  flat = MultiHeadAttention(num_heads=2, hidden_size=16, prop_attn=False)
  out_flat, _ = flat.apply(v, x, jnp.array([[1.0, 1.0, 1.0, 7.0]]))
  np.testing.assert_allclose(out_flat, out_plain, atol=1e-6)


@pytest.mark.parametrize("method", list(REDUCERS))
def test_token_counts_follow_schedule(params, method):
  inputs = batch()
  out = apply(method, params, inputs, output_hidden_states=True)
  reduce = REDUCERS[method]
  schedule = BASE.replace(reduce=reduce).schedule(64 * 96 // 256 + 1, 10)
  want = [schedule.tokens_in(i) for i in range(BASE.num_hidden_layers + 1)]
  assert out["tokens"].tolist() == want
  assert [hs.shape[1] for hs in out["hidden_states"]] == want
  if schedule.steps and schedule.steps[0].image_in is not None:
    image_text = [schedule.image_text_in(i) for i in range(len(want))]
    assert out["image_tokens"].tolist() == [a for a, _ in image_text]
    assert out["text_tokens"].tolist() == [b for _, b in image_text]
  if method != "none":  # 10 text + 1 + (64/16)*(96/16) image tokens unreduced
    assert want[-1] < 35


def test_dynamicvit_prunes_before_its_layers(params):
  """As DynamicViT's `pruning_loc`: layer 1's attention already sees the
  kept tokens (int(0.7 * 24) = 16 patches + CLS + 10 text), layer 2 the
  int(0.5 * 24) = 12 of stage 2."""
  out = apply("dynamicvit", params, batch(), output_attentions=True)
  assert [a.shape[-1] for a in out["attentions"]] == [35, 27, 23, 23]


def test_dynamicvit_training_masks_the_dropped_tokens(params):
  """In training every token stays, and the ones its Gumbel decisions drop
  get no attention from the other queries from the next layer on (the
  keep policy covers the whole [text; image] stream)."""
  out = apply("dynamicvit", params, batch(), output_attentions=True,
              train=True, rngs={"dropout": jax.random.PRNGKey(0),
                                "gumbel": jax.random.PRNGKey(1)})
  first, second = (np.asarray(out["attentions"][i]) for i in (0, 1))
  assert first.shape == second.shape  # masked, not dropped
  # The text [CLS] query (row 0) on the image keys (columns 10:).
  dead = lambda a: (a[:, :, 0, 10:] < 1e-5).all(axis=1)  # [B, 25]
  assert not dead(first).any() and dead(second).any()
  kept = out["reducer_aux"][0]  # [B] kept fraction of the patches
  np.testing.assert_allclose(1 - kept, dead(second)[:, 1:].mean(-1))


def test_source_tracking_accounts_for_every_token(params):
  out = apply("pumer", params, batch(), track_source=True)
  source = np.asarray(out["source"])  # [B, N_out, N0]
  assert source.shape == (3, int(out["tokens"][-1]), 10 + 25)
  # Each original token is in at most one slot (pruned ones in none), and
  # every slot's size is the number of real originals it holds.
  assert source.sum(1).max() == 1.0
  mask = np.concatenate([np.asarray(batch()["attention_mask"]),
                         np.ones((3, 25))], 1)
  np.testing.assert_allclose(source @ mask[..., None], out["size"][..., None])


@pytest.mark.parametrize("method", list(REDUCERS))
def test_jit_once_per_schedule_and_finite_grads(params, method):
  model = Vilt(BASE.replace(reduce=REDUCERS[method]))
  p = params if method == "dynamicvit" else base_params(params)
  traces = []

  @jax.jit
  def loss(p, inputs, rng):
    traces.append(1)
    drop, gumbel = jax.random.split(rng)
    out = model.apply({"params": p}, **inputs, train=True,
                      rngs={"dropout": drop, "gumbel": gumbel})
    total = jnp.mean(out["logits"] ** 2)
    for frac in out.get("reducer_aux", ()):
      total += jnp.mean((frac - 0.5) ** 2)
    return total

  grads = jax.grad(loss)(p, batch(0), jax.random.PRNGKey(0))
  jax.grad(loss)(p, batch(1), jax.random.PRNGKey(1))
  assert len(traces) == 1
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  first_layer = grads["vilt"]["layer_0"]["attention"]["query"]["kernel"]
  assert float(jnp.abs(first_layer).sum()) > 0
  if method == "dynamicvit":
    predictor = grads["vilt"]["keep_predictor_0"]["out_2"]["kernel"]
    assert float(jnp.abs(predictor).sum()) > 0


def test_bfloat16_compute_contract(params):
  model = Vilt(BASE.replace(dtype="bfloat16", reduce=REDUCERS["pumer"]))
  out = jit_apply(model, {"params": base_params(params)}, batch())
  want = apply("pumer", params, batch())
  assert out["logits"].dtype == jnp.float32
  np.testing.assert_allclose(out["logits"], want["logits"], atol=0.15)


def test_bad_inputs_have_clear_errors(params):
  model = Vilt(BASE.replace(input_size=(64, 96)))
  p = {"params": base_params(params)}
  good = batch()
  cases = [
      (dict(pixel_values=good["pixel_values"][0]), "NHWC"),
      (dict(pixel_values=jnp.zeros((3, 64, 96, 4))), "channels"),
      (dict(pixel_values=jnp.zeros((3, 64, 64, 3))), "input_size"),
      (dict(input_ids=jnp.ones((3, 13), jnp.int32),
            attention_mask=jnp.ones((3, 13), jnp.int32)),
       "at most 12 tokens"),
      (dict(input_ids=jnp.ones((3, 0), jnp.int32),
            attention_mask=jnp.ones((3, 0), jnp.int32)), "no tokens"),
      (dict(attention_mask=jnp.ones((3, 9), jnp.int32)), "attention_mask"),
  ]
  for change, message in cases:
    with pytest.raises(ValueError, match=message):
      model.apply(p, **{**good, **change})
  odd = Vilt(BASE)
  with pytest.raises(ValueError, match="multiple of patch_size"):
    odd.apply(p, **{**good, "pixel_values": jnp.zeros((3, 60, 96, 3))})
  with pytest.raises(ValueError, match="layers"):
    Vilt(BASE.replace(reduce=ReduceConfig(
        method="pumer", layers=(4,), prune_ratio=0.1))).apply(p, **good)
  with pytest.raises(ValueError, match="unknown keys"):
    ReduceConfig.from_mapping({"method": "pumer", "prune_ration": 0.1})


def test_padding_with_a_huge_logit_keeps_gradients_finite():
  """Regression: a padded key far above the real ones once underflowed the
  real masses and overflowed the normalisation's gradient (NaN loss)."""
  attn = MultiHeadAttention(num_heads=1, hidden_size=4)
  x = jnp.array([[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0],
                  [0.0, 0.0, 1.0, 0.0]]])
  v = attn.init(jax.random.PRNGKey(0), x, jnp.ones((1, 3)))
  v = flax.linen.meta.unbox(v)  # a new tree: safe to edit below
  eye = jnp.eye(4)
  params = v["params"]
  params["query"]["kernel"] = eye * 30.0
  params["key"]["kernel"] = eye * 30.0
  size = jnp.array([[1.0, 1.0, 0.0]])
  # Token 2 is padding; its key aligns with every query far more than the
  # real keys do: its logit leads by about 900.
  x = x.at[0, 2].set(jnp.array([1.0, 1.0, 1.0, 0.0]) * 3)
  out, aux = attn.apply({"params": params}, x, size)
  np.testing.assert_allclose(aux["probs"][..., 2], 0.0)
  np.testing.assert_allclose(aux["probs"].sum(-1), 1.0, rtol=1e-6)
  grads = jax.grad(lambda p: attn.apply({"params": p}, x, size)[0].sum())(
      params)
  assert all(bool(jnp.all(jnp.isfinite(g)))
             for g in jax.tree_util.tree_leaves(grads))


def test_dynamicvit_mask_with_a_huge_dropped_logit_keeps_gradients_finite():
  """Regression: DynamicViT's training mask dropped the key whose logit led
  by ~900; the kept keys' masses underflowed and the loss's gradient was NaN
  (the demo's distillation diverged at step 1). Its reference's masked
  softmax (self weight, epsilon) keeps it finite, and differentiable in the
  policy."""
  attn = MultiHeadAttention(num_heads=1, hidden_size=4)
  x = jnp.array([[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0],
                  [1.0, 1.0, 1.0, 0.0]]]) * jnp.array([1.0, 1.0, 3.0])[
                      None, :, None]
  v = flax.linen.meta.unbox(attn.init(jax.random.PRNGKey(0), x,
                                      jnp.ones((1, 3))))
  params = v["params"]
  params["query"]["kernel"] = jnp.eye(4) * 30.0
  params["key"]["kernel"] = jnp.eye(4) * 30.0
  policy = jnp.array([[1.0, 1.0, 0.0]])  # token 2 dropped by the predictor

  def loss(p, policy):
    out, _ = attn.apply({"params": p}, x, jnp.ones((1, 3)), key_policy=policy)
    return out[:, :2].sum()

  grads, policy_grad = jax.grad(loss, argnums=(0, 1))(params, policy)
  assert all(bool(jnp.all(jnp.isfinite(g)))
             for g in jax.tree_util.tree_leaves(grads))
  assert bool(jnp.all(jnp.isfinite(policy_grad)))
  _, aux = attn.apply({"params": params}, x, jnp.ones((1, 3)),
                      key_policy=policy)
  # Every mass underflowed: the epsilon spreads the row evenly, as the
  # reference's does, instead of dividing 0 by 0.
  np.testing.assert_allclose(aux["probs"].sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("prop_attn", [True, False])
def test_fused_attention_equals_the_explicit_path(prop_attn, monkeypatch):
  """Layers that need no probabilities run jax.nn.dot_product_attention
  (on GPU; here forced on CPU); with sizes (merged tokens), padding and
  cross-attention it matches the explicit softmax the reducers read."""
  monkeypatch.setattr(layers_lib, "FUSED_ATTENTION_BACKENDS",
                      {jax.default_backend()})
  attn = MultiHeadAttention(num_heads=4, hidden_size=32, prop_attn=prop_attn)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 7, 32)), jnp.float32)
  context = jnp.asarray(rng.normal(size=(2, 9, 32)), jnp.float32)
  size = jnp.asarray([[1, 3, 2, 1, 1, 0, 0, 1, 1],
                      [4, 1, 1, 0, 1, 1, 2, 1, 0]], jnp.float32)
  params = attn.init(jax.random.PRNGKey(0), x, size, context)
  for ctx in (context, None):
    key_size = size if ctx is not None else size[:, :7]
    explicit, aux = attn.apply(params, x, key_size, ctx, need_probs=True)
    fused, fused_aux = attn.apply(params, x, key_size, ctx, need_probs=False)
    assert fused_aux["probs"] is None and aux["probs"] is not None
    np.testing.assert_allclose(fused, explicit, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused_aux["keys"], aux["keys"])
