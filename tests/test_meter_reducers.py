"""METER with reducers in its fusion blocks: identities, the schedule's
counts, conservation, compilation and gradients for every method, errors."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax.models import Meter, MeterConfig, ReduceConfig

BASE = MeterConfig(
    vision_hidden_size=24, vision_num_layers=1, vision_num_heads=2,
    vision_intermediate_size=32, image_size=64, patch_size=16,
    vocab_size=50, text_hidden_size=20, text_num_layers=1, text_num_heads=2,
    text_intermediate_size=32, max_position_embeddings=16,
    hidden_size=32, num_fusion_layers=2, num_attention_heads=4,
    intermediate_size=48, num_labels=5, hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)
REDUCERS = {
    "none": ReduceConfig(),
    "pumer": ReduceConfig(method="pumer", layers=(0, 1), prune_ratio=0.2,
                          image_merge_ratio=0.2, text_merge_ratio=0.2,
                          semantics="sized"),
    "pumer_official": ReduceConfig(
        method="pumer", layers=(0, 1), prune_ratio=0.2,
        image_merge_ratio=0.2, text_merge_ratio=0.2, score_heads="first"),
    "tome": ReduceConfig(method="tome", layers=(0, 1), tome_r=4),
    "dynamicvit": ReduceConfig(method="dynamicvit", layers=(0, 1),
                               keep_ratios=(0.7, 0.5)),
    "smres": ReduceConfig(method="smres", smres_size=(48, 48)),
}


def batch(seed=0, n=3, length=10, hw=(64, 96), images=None):
  rng = np.random.default_rng(seed)
  mask = np.ones((n, length), np.int32)
  mask[1, 7:] = 0
  mask[2, 4:] = 0
  shape = (n,) + ((images,) if images else ()) + hw + (3,)
  return dict(
      input_ids=jnp.asarray(rng.integers(2, 50, (n, length)), jnp.int32),
      attention_mask=jnp.asarray(mask),
      pixel_values=jnp.asarray(rng.normal(size=shape), jnp.float32),
  )


def jit_apply(model, variables, inputs, **kw):
  return jax.jit(functools.partial(model.apply, **kw))(variables, **inputs)


@pytest.fixture(scope="module")
def params():
  model = Meter(BASE.replace(reduce=REDUCERS["dynamicvit"]))
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), **batch())
  return flax.linen.meta.unbox(variables)["params"]


def base_params(params):
  meter = {k: v for k, v in params["meter"].items()
           if not k.startswith("keep_predictor")}
  return {**params, "meter": meter}


def apply(reduce, params, inputs, config=BASE, **kw):
  model = Meter(config.replace(reduce=reduce))
  p = params if reduce.method == "dynamicvit" else base_params(params)
  return jit_apply(model, {"params": p}, inputs, **kw)


def test_zero_ratios_equal_unreduced(params):
  inputs = batch()
  want = apply(REDUCERS["none"], params, inputs)
  for reduce in (
      ReduceConfig(method="pumer", layers=(0, 1), semantics="sized"),
      ReduceConfig(method="tome", tome_r=0),
      ReduceConfig(method="dynamicvit", layers=(0, 1), keep_ratios=(1.0, 1.0)),
  ):
    got = apply(reduce, params, inputs)
    np.testing.assert_allclose(got["logits"], want["logits"], atol=1e-5)
    assert got["tokens"].tolist() == want["tokens"].tolist()


def test_meter_vqa_counts_follow_the_schedule():
  """METER VQA at 384x384 (577 image tokens), 32 text, blocks 0-3."""
  config = BASE.replace(image_size=384, num_fusion_layers=6,
                        max_position_embeddings=40)
  reduce = ReduceConfig(method="pumer", layers=(0, 1, 2, 3), prune_ratio=0.2,
                        image_merge_ratio=0.2, text_merge_ratio=0.2)
  schedule = config.replace(reduce=reduce).schedule(577, 32)
  assert [(s.image_out, s.text_out) for s in schedule.steps] == [
      (347, 26), (209, 21), (125, 17), (75, 14)]
  model = Meter(config.replace(reduce=reduce))
  inputs = batch(length=32, hw=(384, 384), n=3)
  # Shapes alone, traced without compiling: every count is static.
  out, _ = jax.eval_shape(functools.partial(
      model.init_with_output, output_hidden_states=True),
      jax.random.PRNGKey(0), **inputs)
  hidden = out["hidden_states"]
  assert [h.shape[1] for h in hidden["fusion_image"]] == [
      577, 347, 209, 125, 75, 75, 75]
  assert [h.shape[1] for h in hidden["fusion_text"]] == [
      32, 26, 21, 17, 14, 14, 14]
  assert out["logits"].shape == (3, BASE.num_labels)


def test_pumer_conserves_kept_image_size(params):
  """Merges keep the size; pruning removes exactly the pruned tokens."""
  inputs = batch()
  reduce = REDUCERS["pumer"]
  out = apply(reduce, params, inputs, track_source=True)
  schedule = BASE.replace(reduce=reduce).schedule(25, 10)
  li = 1 + 4 * 6
  pruned = sum(s.prune for s in schedule.steps)
  assert out["size"].shape == (3, schedule.steps[-1].image_out)
  size, source = np.asarray(out["size"]), np.asarray(out["source"])
  # Every surviving slot holds as many source tokens as its size says, and
  # no source token is in two slots.
  np.testing.assert_allclose(size, source.sum(-1))
  assert (source.sum(1) <= 1).all()
  np.testing.assert_allclose(size.sum(-1), li - pruned)
  assert (source[:, 0, 0] == 1).all()  # the image CLS token stays first


@pytest.mark.parametrize("method", ["pumer", "pumer_official", "tome",
                                    "dynamicvit", "smres"])
def test_every_method_jits_and_differentiates(params, method):
  reduce = REDUCERS[method]
  model = Meter(BASE.replace(reduce=reduce))
  p = params if method == "dynamicvit" else base_params(params)
  inputs = batch()

  def loss(p):
    out = model.apply({"params": p}, **inputs, train=True,
                      rngs={"dropout": jax.random.PRNGKey(1),
                            "gumbel": jax.random.PRNGKey(2)})
    aux = sum(f.sum() for f in out.get("reducer_aux", ()))
    return out["logits"].sum() + aux

  grads = jax.jit(jax.grad(loss))(p)
  norms = {k: float(sum(jnp.abs(g).sum() for g in jax.tree.leaves(v)))
           for k, v in grads["meter"].items()}
  assert all(np.isfinite(v) for v in norms.values())
  assert norms["vision"] > 0 and norms["text"] > 0
  assert norms["text_layer_1"] > 0 and norms["image_layer_1"] > 0
  if method == "dynamicvit":
    assert norms["keep_predictor_0"] > 0  # trained through the Gumbel mask


def test_reduced_counts_per_method(params):
  inputs = batch()
  li = 1 + 4 * 6
  tome = apply(REDUCERS["tome"], params, inputs)
  assert tome["image_tokens"].tolist() == [li, li - 4, li - 8]
  assert tome["text_tokens"].tolist() == [10] * 3
  dyn = apply(REDUCERS["dynamicvit"], params, inputs)
  keep1, keep2 = int(0.7 * (li - 1)) + 1, int(0.5 * (li - 1)) + 1
  assert dyn["image_tokens"].tolist() == [li, keep1, keep2]
  assert np.isfinite(np.asarray(dyn["logits"])).all()
  smres = apply(REDUCERS["smres"], params, inputs)
  assert smres["image_tokens"].tolist() == [10] * 3


@pytest.mark.parametrize("head", ["nlvr2", "retrieval"])
def test_heads(head):
  config = BASE.replace(head=head, num_labels=2,
                        num_images=2 if head == "nlvr2" else 1,
                        reduce=REDUCERS["pumer"])
  model = Meter(config)
  inputs = batch(images=2 if head == "nlvr2" else None)
  out, _ = jax.jit(model.init_with_output)(jax.random.PRNGKey(0), **inputs)
  width = 2 * BASE.hidden_size * (2 if head == "nlvr2" else 1)
  assert out["pooled"].shape == (3, width)
  assert out["logits"].shape == (3, 2 if head == "nlvr2" else 1)


def test_bad_inputs_have_clear_errors(params):
  p = {"params": base_params(params)}
  model = Meter(BASE.replace(input_size=(64, 96)))
  good = batch()
  cases = [
      (dict(pixel_values=good["pixel_values"][0]), "NHWC"),
      (dict(pixel_values=jnp.zeros((3, 64, 64, 3))), "input_size"),
      (dict(input_ids=jnp.ones((3, 15), jnp.int32),
            attention_mask=jnp.ones((3, 15), jnp.int32)), "at most 14 tokens"),
      (dict(input_ids=jnp.ones((3, 0), jnp.int32),
            attention_mask=jnp.ones((3, 0), jnp.int32)), "no tokens"),
  ]
  for change, message in cases:
    with pytest.raises(ValueError, match=message):
      model.apply(p, **{**good, **change})
  with pytest.raises(ValueError, match="outside"):
    Meter(BASE.replace(reduce=ReduceConfig(method="pumer", layers=(2,),
                                           prune_ratio=0.1))).apply(p, **good)
  with pytest.raises(ValueError, match="divisible"):
    MeterConfig(hidden_size=30, num_attention_heads=4)
