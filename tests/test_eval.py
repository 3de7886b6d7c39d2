"""evaluate/: metrics, example accounting, several reducers in one run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax.data.loaders import RetrievalBatches
from pumer_jax.bench import pareto
from pumer_jax.evaluate import metrics, retrieval, runner
from pumer_jax.evaluate import report as report_lib
from pumer_jax.models.inputs import model_inputs
from pumer_jax.train import finetune, optim, sharding
from pumer_jax.train.state import TrainState
from pumer_jax.train.step import make_train_step
from train_fixtures import init_model, random_batch, save_tiny_model, tiny_config


def test_vqa_score_and_accuracy_by_hand():
  logits = jnp.array([[0.1, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
  labels = jnp.array([[0.0, 0.6, 1.0], [1.0, 0.0, 0.0], [0.3, 0.0, 0.0]])
  valid = jnp.array([True, True, False])
  total, count = metrics.batch_metric_sums(
      "vqa", {"logits": logits}, {"labels": labels, "valid": valid})
  assert float(total) == pytest.approx(1.6) and float(count) == 2.0
  total, count = metrics.batch_metric_sums(
      "ve", {"logits": logits},
      {"label": jnp.array([1, 2, 2]), "valid": jnp.array([True] * 3)})
  assert float(total) == 2.0 and float(count) == 3.0


def test_recall_at_k_by_hand():
  # 3 images, 4 captions; captions 0,1 -> image 0, 2 -> image 1, 3 -> 2.
  scores = np.array([[0.9, 0.1, 0.3, 0.0],
                     [0.8, 0.7, 0.2, 0.5],
                     [0.1, 0.2, 0.9, 0.4]])
  got = metrics.recall_at_k(scores, np.array([0, 0, 1, 2]), ks=(1, 2))
  # IR@1: caption 0 -> image 0 (yes), 1 -> 1 (no), 2 -> 2 (no), 3 -> 1 (no).
  assert got["ir_r@1"] == 0.25
  # IR@2: c0 yes, c1 top2 {1,2} no, c2 {2,0} no, c3 {1,2} yes.
  assert got["ir_r@2"] == 0.5
  # TR@1: image 0 -> caption 0 (its own), image 1 -> 0 (no), 2 -> 2 (no).
  assert got["tr_r@1"] == pytest.approx(1 / 3)
  # TR@2: image 1 top2 {0, 1} no; image 2 top2 {2, 3}: 3 is its caption.
  assert got["tr_r@2"] == pytest.approx(2 / 3)


def padded_batches(num_examples=19, batch_size=8):
  """A single pass with a padded last batch, as the eval loaders give."""
  batches = []
  for start in range(0, num_examples, batch_size):
    batch = random_batch(100 + start, batch=batch_size)
    valid = np.arange(start, start + batch_size) < num_examples
    batch["valid"] = valid
    batch["labels"][~valid] = 1.0  # padding would score 1 if it counted
    batches.append(batch)
  return lambda: iter(batches)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
  return save_tiny_model(tmp_path_factory.mktemp("model"))


def test_evaluate_counts_each_example_once_per_method(saved_model, tmp_path):
  directory, model, params = saved_model
  config = tiny_config()
  make_batches = padded_batches()
  report = runner.evaluate(directory, config, make_batches,
                             ["none", "pumer", "tome"])
  by_method = {r["method"]: r for r in report["results"]}
  assert [r["examples"] for r in report["results"]] == [19, 19, 19]
  # The unreduced score, recomputed directly from the model.
  total = 0.0
  for batch in make_batches():
    logits = model.apply({"params": params}, **model_inputs(batch))[
        "logits"]
    chosen = batch["labels"][np.arange(8), np.argmax(logits, -1)]
    total += float((chosen * batch["valid"]).sum())
  assert by_method["none"]["value"] == pytest.approx(total / 19, abs=1e-6)
  assert by_method["none"]["flop_ratio"] == 1.0
  for name in ("pumer", "tome"):
    assert by_method[name]["flop_ratio"] < 1.0
    assert by_method[name]["tokens_per_layer"][-1] < 25
  assert by_method["pumer"]["reduce"]["method"] == "pumer"
  # What eval.py writes is what `bench --sweep --eval_results` reads.
  path = tmp_path / "eval_test.json"
  report_lib.write_report(report, path)
  read = pareto.load_eval_results(path)
  assert [r.method for r, _ in read] == ["none", "pumer", "tome"]
  assert [v for _, v in read] == [r["value"] for r in report["results"]]


def test_unknown_method_and_missing_predictors(saved_model):
  directory, _, _ = saved_model
  with pytest.raises(ValueError, match="config.reducers has no such entry"):
    runner.evaluate(directory, tiny_config(), padded_batches(), ["magic"])
  with pytest.raises(ValueError, match=r"needs trained parameters "
                     r"\(keep_predictor_\*\)"):
    runner.evaluate(directory, tiny_config(), padded_batches(),
                      ["dynamicvit"])
  with pytest.raises(FileNotFoundError, match="not a model checkpoint"):
    runner.evaluate(directory / "nowhere", tiny_config(), padded_batches(),
                      ["none"])


def retrieval_passes(num_images=3, per_image=2, image_batch=2, caption_batch=4):
  """In-memory retrieval passes: padded image and caption batches."""
  rng = np.random.default_rng(7)
  pixels = rng.normal(size=(num_images, 32, 32, 3)).astype(np.float32)
  num_captions = num_images * per_image
  ids = rng.integers(1, 30, (num_captions, 8)).astype(np.int32)

  def batches(count, size, make):
    out = []
    for start in range(0, count, size):
      index = np.arange(start, start + size)
      valid = index < count
      out.append(make(np.where(valid, index, 0), valid))
    return out

  images = batches(num_images, image_batch, lambda i, v: dict(
      pixel_values=pixels[i], image_index=i.astype(np.int32), valid=v))
  captions = batches(num_captions, caption_batch, lambda c, v: dict(
      input_ids=ids[c], attention_mask=np.ones_like(ids[c]),
      image_index=(c // per_image).astype(np.int32),
      caption_index=c.astype(np.int32), valid=v))
  pairs = [dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                pixel_values=pixels[b["image_index"]],
                label=np.ones(len(b["valid"]), np.int32), valid=b["valid"])
           for b in captions]
  return RetrievalBatches(lambda: iter(pairs),
                                   lambda: iter(captions),
                                   lambda: iter(images)), pixels, ids


def _retrieval_forward(saved_model):
  """The saved model with a fixed rank head: (jitted forward, params)."""
  _, model, params = saved_model
  retrieval_model = type(model)(model.config.replace(head="retrieval",
                                                     num_labels=1))
  p = dict(params)
  p.pop("classifier")
  p["rank"] = {"rank_output": {"kernel": jnp.ones((32, 1)) * 0.1,
                               "bias": jnp.zeros((1,))}}
  return jax.jit(lambda p, b: retrieval_model.apply(
      {"params": p}, **model_inputs(b))), p


def test_retrieval_scores_every_pair(saved_model):
  forward, p = _retrieval_forward(saved_model)
  passes, pixels, ids = retrieval_passes()
  mesh = sharding.make_mesh(1, 1)
  scores, image_of_caption = retrieval.retrieval_scores(
      forward, p, passes.captions, passes.images, mesh)
  assert scores.shape == (3, 6)
  np.testing.assert_array_equal(image_of_caption, [0, 0, 1, 1, 2, 2])
  for i in range(3):
    direct = forward(p, dict(input_ids=ids, attention_mask=np.ones_like(ids),
                             pixel_values=np.repeat(pixels[i:i + 1], 6, 0)))
    np.testing.assert_allclose(scores[i], direct["logits"][:, 0], atol=1e-5)


def test_retrieval_training_step_uses_negatives():
  config = tiny_config(task="retrieval", **{"model.head": "retrieval",
                                            "model.num_labels": 1})
  model, params = init_model(config)
  # Every pair scores exactly 1: positives cost softplus(-1), and the
  # negatives (label 0) softplus(1). Without negatives it would be the first.
  params["rank"]["rank_output"] = {"kernel": jnp.zeros((32, 1)),
                                   "bias": jnp.ones((1,))}
  tx = optim.make_optimizer(config.optim, 10, params)
  state = TrainState(jnp.zeros((), jnp.int32), params,
                     tx.init(params), jax.random.PRNGKey(1))
  step = jax.jit(make_train_step(finetune.make_loss_fn(model, config), tx))
  batch = random_batch(0)
  batch.pop("labels")
  _, metrics = step(state, batch, None)
  softplus = lambda v: np.log1p(np.exp(v))
  assert float(metrics["task_loss"]) == pytest.approx(
      (softplus(-1.0) + softplus(1.0)) / 2, rel=1e-5)


def test_retrieval_resumes_where_a_killed_run_stopped(saved_model, tmp_path):
  forward, p = _retrieval_forward(saved_model)
  passes, _, _ = retrieval_passes()
  mesh = sharding.make_mesh(1, 1)
  whole, _ = retrieval.retrieval_scores(forward, p, passes.captions,
                                        passes.images, mesh)
  calls = []

  def dies_after(limit):
    def fwd(params, batch):
      if len(calls) == limit:
        raise KeyboardInterrupt  # the run is killed mid-matrix
      calls.append(1)
      return forward(params, batch)
    return fwd

  cache = tmp_path / "partial"
  key = dict(model="m", method="none")
  per_block = len(list(passes.images()))  # forwards per caption batch
  with pytest.raises(KeyboardInterrupt):
    retrieval.retrieval_scores(dies_after(per_block + 1), p, passes.captions,
                               passes.images, mesh, cache_dir=cache,
                               cache_key=key)
  assert len(list(cache.glob("captions_*.npy"))) == 1
  with pytest.raises(ValueError, match="holds the partial scores of another"):
    retrieval.retrieval_scores(forward, p, passes.captions, passes.images,
                               mesh, cache_dir=cache,
                               cache_key=dict(key, method="pumer"))
  calls.clear()
  resumed, _ = retrieval.retrieval_scores(
      dies_after(10**6), p, passes.captions, passes.images, mesh,
      cache_dir=cache, cache_key=key)
  blocks = len(list(passes.captions()))
  assert len(calls) == (blocks - 1) * per_block  # the first block was kept
  np.testing.assert_array_equal(resumed, whole)
  assert not cache.exists()
