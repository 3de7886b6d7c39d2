"""eval_lib: metrics, example accounting, several reducers in one run."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax import checkpoint, eval_lib, train_lib
from train_fixtures import random_batch, tiny_config


def test_vqa_score_and_accuracy_by_hand():
  logits = jnp.array([[0.1, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
  labels = jnp.array([[0.0, 0.6, 1.0], [1.0, 0.0, 0.0], [0.3, 0.0, 0.0]])
  valid = jnp.array([True, True, False])
  total, count = eval_lib.batch_metric_sums(
      "vqa", {"logits": logits}, {"labels": labels, "valid": valid})
  assert float(total) == pytest.approx(1.6) and float(count) == 2.0
  total, count = eval_lib.batch_metric_sums(
      "ve", {"logits": logits},
      {"label": jnp.array([1, 2, 2]), "valid": jnp.array([True] * 3)})
  assert float(total) == 2.0 and float(count) == 3.0


def test_recall_at_k_by_hand():
  # 3 images, 4 captions; captions 0,1 -> image 0, 2 -> image 1, 3 -> 2.
  scores = np.array([[0.9, 0.1, 0.3, 0.0],
                     [0.8, 0.7, 0.2, 0.5],
                     [0.1, 0.2, 0.9, 0.4]])
  got = eval_lib.recall_at_k(scores, np.array([0, 0, 1, 2]), ks=(1, 2))
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
  config = tiny_config()
  model_config = train_lib.build_model_config(config)
  model = train_lib.Vilt(model_config)
  example = train_lib.example_batch(model_config, 1, 8)
  params = flax.linen.meta.unbox(
      jax.jit(model.init)(jax.random.PRNGKey(0), **example))["params"]
  directory = tmp_path_factory.mktemp("model")
  checkpoint.save_model(directory, model_config, params, overwrite=True)
  return directory, model, params


def test_evaluate_counts_each_example_once_per_method(saved_model):
  directory, model, params = saved_model
  config = tiny_config()
  make_batches = padded_batches()
  report = eval_lib.evaluate(directory, config, make_batches,
                             ["none", "pumer", "tome"])
  by_method = {r["method"]: r for r in report["results"]}
  assert [r["examples"] for r in report["results"]] == [19, 19, 19]
  # The unreduced score, recomputed directly from the model.
  total = 0.0
  for batch in make_batches():
    logits = model.apply({"params": params}, **train_lib.model_inputs(batch))[
        "logits"]
    chosen = batch["labels"][np.arange(8), np.argmax(logits, -1)]
    total += float((chosen * batch["valid"]).sum())
  assert by_method["none"]["value"] == pytest.approx(total / 19, abs=1e-6)
  assert by_method["none"]["flop_ratio"] == 1.0
  for name in ("pumer", "tome"):
    assert by_method[name]["flop_ratio"] < 1.0
    assert by_method[name]["tokens_per_layer"][-1] < 25
  assert by_method["pumer"]["reduce"]["method"] == "pumer"


def test_unknown_method_and_missing_predictors(saved_model):
  directory, _, _ = saved_model
  with pytest.raises(ValueError, match="config.reducers has no such entry"):
    eval_lib.evaluate(directory, tiny_config(), padded_batches(), ["magic"])
  with pytest.raises(ValueError, match="keep predictors"):
    eval_lib.evaluate(directory, tiny_config(), padded_batches(),
                      ["dynamicvit"])
  with pytest.raises(FileNotFoundError, match="not a model checkpoint"):
    eval_lib.evaluate(directory / "nowhere", tiny_config(), padded_batches(),
                      ["none"])
