"""pumer_jax.search: the most accurate schedule under a compiled-FLOP budget."""

import pytest

from pumer_jax import search
from pumer_jax.models import ReduceConfig, saved
from test_eval import padded_batches
from train_fixtures import init_model, tiny_config


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  model, params = init_model(tiny_config())
  directory = tmp_path_factory.mktemp("search_model")
  saved.save_model(directory, model.config, params, overwrite=True)
  return directory


# A few settings per method keep the compiles few (the default grids are
# `search.candidates`, checked below for what they cover).
OPTIONS = {
    "pumer": [ReduceConfig(method="pumer", layers=layers, prune_ratio=p,
                           image_merge_ratio=0.2, text_merge_ratio=0.2)
              for layers, p in (((0, 1), 0.5), ((1,), 0.2))],
    "tome": [ReduceConfig(method="tome", tome_r=r) for r in (2, 4, 8)],
    "smres": None,  # the default grid: 24x24, 16x16, 8x8
}


@pytest.mark.parametrize("method, budget", [("pumer", 0.8), ("tome", 0.7),
                                            ("smres", 0.6)])
def test_search_finds_schedules_under_the_budget(model_dir, method, budget):
  rows = search.search(model_dir, padded_batches(), method, budget, top=3,
                       options=OPTIONS[method], progress=False)
  assert 1 <= len(rows) <= 3
  assert all(r["flop_ratio"] <= budget for r in rows)
  assert all(r["reduce"]["method"] == method for r in rows)
  scores = [r["score"] for r in rows]
  assert scores == sorted(scores, reverse=True)
  # Each row's score is the model's accuracy under that schedule.
  best = ReduceConfig.from_mapping(rows[0]["reduce"])
  score, flops = search.evaluate(model_dir, best, padded_batches())
  full = search.evaluate(model_dir, ReduceConfig(), padded_batches())[1]
  assert rows[0]["score"] == pytest.approx(score)
  assert rows[0]["flop_ratio"] == pytest.approx(flops / full)


def test_default_grids():
  config = tiny_config()
  from pumer_jax.train.finetune import build_model_config
  model_config = build_model_config(config)  # 3 layers, 32x32, 8x8 patches
  pumer = search.candidates("pumer", model_config)
  assert {c.layers for c in pumer} == {(0,), (0, 1), (1,)}
  assert [c.smres_size for c in search.candidates("smres", model_config)] == [
      (24, 24), (16, 16), (8, 8)]


def test_search_rejects_an_unreachable_budget(model_dir):
  with pytest.raises(ValueError, match="no smres schedule reaches a FLOP "
                     "ratio of 0.01: the cheapest tried costs"):
    search.search(model_dir, padded_batches(), "smres", 0.01, progress=False)
  with pytest.raises(ValueError, match="not searchable"):
    search.candidates("dynamicvit", None)
  with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
    search.search(model_dir, padded_batches(), "pumer", 1.5, progress=False)
