"""A reducer defined outside the package, registered with one call, runs
everywhere a built-in does: ViLT and METER, train.py and eval.py by its
config name, search, the trade-off table and the pictures."""

import dataclasses
import json
import pathlib
import subprocess
import sys
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pumer_jax import demo, search, visualize
from pumer_jax.evaluate import tradeoff
from pumer_jax.models import Meter, MeterConfig, Vilt, ViltConfig, saved
from pumer_jax.reduce import (
    METHODS,
    LayerCounts,
    ReduceConfig,
    Tokens,
    register,
)
from pumer_jax.reduce.counts import check_layers
from pumer_jax.reduce.prune import topk_index
from test_eval import padded_batches
from train_fixtures import init_model, shapes_config, tiny_config

ROOT = pathlib.Path(__file__).parent.parent


@register
@dataclasses.dataclass(frozen=True)
class NormPrune(ReduceConfig):
  """Keeps the image tokens of largest L2 norm: a reducer a user might try."""

  method: ClassVar[str] = "norm_prune"
  label: ClassVar[str] = "NormPrune"

  layers: tuple[int, ...] = ()
  keep: float = 0.5

  def plan(self, geometry, train):
    steps, image = [], geometry.image_len
    for layer in check_layers(self.layers, geometry.depth):
      kept = max(1, int(self.keep * image))
      steps.append(LayerCounts(layer=layer, tokens_in=image + geometry.text_len,
                               image_in=image, text_in=geometry.text_len,
                               prune=image - kept))
      image = kept
    return tuple(steps)

  def reduce_streams(self, counts, text, image, view, ctx):
    norms = jnp.linalg.norm(image.x.astype(jnp.float32), axis=-1)
    return text, image.take(topk_index(image.size, norms, counts.keep)), None

  @classmethod
  def search_space(cls, geometry, image_hw):
    return [cls(layers=(layer,), keep=k) for layer in range(geometry.depth)
            for k in (0.75, 0.5, 0.25)]


def test_registered_by_one_call():
  assert METHODS["norm_prune"] is NormPrune
  made = ReduceConfig.from_mapping({"method": "norm_prune", "layers": [1],
                                    "keep": 0.5})
  assert made == NormPrune(layers=(1,)) and made.to_dict()["method"] == \
      "norm_prune"
  with pytest.raises(ValueError, match="taken by"):
    @register
    @dataclasses.dataclass(frozen=True)
    class Other(ReduceConfig):
      method: ClassVar[str] = "norm_prune"
  with pytest.raises(TypeError, match="not a ReduceConfig dataclass"):
    register(dict)


def test_runs_in_vilt_and_meter():
  rng = np.random.default_rng(0)
  inputs = dict(input_ids=np.ones((2, 6), np.int32),
                attention_mask=np.ones((2, 6), np.int32),
                pixel_values=rng.normal(size=(2, 32, 32, 3)).astype(np.float32))
  vilt = ViltConfig(vocab_size=30, hidden_size=32, num_hidden_layers=3,
                    num_attention_heads=4, intermediate_size=64, image_size=32,
                    patch_size=8, max_position_embeddings=8, num_labels=5,
                    reduce=NormPrune(layers=(1,)))
  meter = MeterConfig(
      vision_hidden_size=32, vision_num_layers=1, vision_num_heads=2,
      vision_intermediate_size=64, image_size=32, patch_size=8,
      text_hidden_size=32, text_num_layers=1, text_num_heads=2,
      text_intermediate_size=64, hidden_size=32, num_fusion_layers=2,
      num_attention_heads=4, intermediate_size=64, vocab_size=30,
      max_position_embeddings=10, num_labels=5, reduce=NormPrune(layers=(0,)))
  for module in (Vilt(vilt), Meter(meter)):
    variables = module.init(jax.random.PRNGKey(0), **inputs)
    out = jax.jit(lambda v, b: module.apply(v, **b, track_source=True))(
        variables, inputs)
    assert int(out["image_tokens"][-1]) == 8  # int(0.5 * 17)
    assert len(out["sources"]) == 1
    grads = jax.grad(lambda v: module.apply(v, **inputs)["logits"].sum())(
        variables)
    assert all(bool(jnp.all(jnp.isfinite(g)))
               for g in jax.tree_util.tree_leaves(grads))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  model, params = init_model(tiny_config())
  directory = tmp_path_factory.mktemp("registry_model")
  saved.save_model(directory, model.config, params, overwrite=True)
  return directory


def test_search_and_the_tradeoff_table(model_dir):
  config = saved.load_model(model_dir)[0].config
  assert "norm_prune" in demo.searched_methods(config)
  rows = search.search(model_dir, padded_batches(), "norm_prune", 0.8, top=2,
                       progress=False)
  best = ReduceConfig.from_mapping(rows[0]["reduce"])
  assert isinstance(best, NormPrune) and rows[0]["flop_ratio"] <= 0.8
  table = tradeoff.compare(
      {"none": tradeoff.Setting(model_dir, ReduceConfig(), "none"),
       "mine": tradeoff.Setting(model_dir, best, best.method)},
      padded_batches(), min_seconds=0)
  assert [r["method"] for r in table] == ["none", "norm_prune"]
  assert table[1]["tokens_per_layer"][-1] < table[0]["tokens_per_layer"][-1]


@pytest.mark.slow
def test_train_eval_and_pictures_by_its_config_name(tmp_path):
  """train.py and eval.py read a config that names the method; the user's
  file (this one) registers it when the config imports it."""
  config_file = tmp_path / "mine.py"
  config_file.write_text(
      "import sys\n"
      f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
      "import test_registry  # registers norm_prune\n"
      f"sys.path.insert(0, {str(ROOT / 'configs')!r})\n"
      "import vilt_shapes\n"
      "from pumer_jax.configs.base import reduce_config\n\n"
      "def get_config(arg=None):\n"
      "  c = vilt_shapes.get_config('runlocal')\n"
      "  c.unlock()\n"
      "  c.reduce = reduce_config('norm_prune', layers=(1,), keep=0.5)\n"
      "  c.reducers.norm_prune = c.reduce\n"
      "  c.eval.methods = 'none,norm_prune'\n"
      f"  c.data.data_dir = {str(tmp_path / 'data')!r}\n"
      "  c.debug_checks = False\n"
      "  c.eval.timing_min_seconds = 0.0\n"
      "  c.lock()\n"
      "  return c\n")
  common = [f"--config={config_file}", f"--workdir={tmp_path / 'run'}"]
  for script in ("train.py", "eval.py"):
    subprocess.run([sys.executable, script, *common], check=True, cwd=ROOT,
                   capture_output=True)
  report = json.loads((tmp_path / "run" / "eval_test.json").read_text())
  assert [r["method"] for r in report["results"]] == ["none", "norm_prune"]
  model = saved.load_model(tmp_path / "run" / "model")[0]
  assert isinstance(model.config.reduce, NormPrune)
  c = shapes_config(tmp_path / "data", 4)
  with c.unlocked():
    c.reducers.norm_prune = model.config.reduce.to_dict()
  path = visualize.draw(tmp_path / "run" / "model", c, ["norm_prune"], 2,
                        tmp_path / "maps.png")
  assert path.read_bytes()[:4] == b"\x89PNG"
