"""ReductionSchedule against PuMer's reference counts, and its errors."""

import ml_collections
import pytest

from pumer_jax.reduce import Geometry, ReduceConfig


def build(method, *, depth, image_len, text_len, arch="vilt", **fields):
  """The schedule of `method` with `fields` on a model of these shapes."""
  return ReduceConfig(method=method, **fields).schedule(
      Geometry(arch, depth, image_len, text_len))


def from_config(block, **shapes):
  return ReduceConfig.from_mapping(block).schedule(Geometry("vilt", **shapes))


def _counts(schedule):
  return [(s.image_out, s.text_out) for s in schedule.steps]


def test_vilt_vqa_reference_counts():
  s = build(
      "pumer", depth=12, image_len=145, text_len=32, layers=(2, 5, 8),
      prune_ratio=0.1, image_merge_ratio=0.3, text_merge_ratio=0.2)
  assert _counts(s) == [(87, 26), (52, 21), (31, 17)]
  assert [(x.prune, x.keep, x.merge_image, x.merge_text) for x in s.steps] \
      == [(14, 131, 44, 6), (9, 78, 26, 5), (5, 47, 16, 4)]
  assert s.image_text_in(0) == (145, 32) and s.image_text_in(3) == (87, 26)
  assert s.tokens_in(9) == 31 + 17 and s.at(4) is None


def test_vilt_ve_reference_counts():
  s = build(
      "pumer", depth=12, image_len=145, text_len=40, layers=(2, 4, 6, 8),
      prune_ratio=0.1, image_merge_ratio=0.3, text_merge_ratio=0.2)
  assert _counts(s) == [(87, 32), (52, 26), (31, 21), (19, 17)]


def test_meter_vqa_reference_counts():
  s = build(
      "pumer", depth=6, image_len=577, text_len=32, layers=(0, 1, 2, 3),
      arch="meter",
      prune_ratio=0.2, image_merge_ratio=0.2, text_merge_ratio=0.2)
  assert _counts(s) == [(347, 26), (209, 21), (125, 17), (75, 14)]


def test_tome_schedules():
  const = build("tome", depth=4, image_len=20, text_len=4,
                                  tome_r=3)
  assert [s.merge for s in const.steps] == [3, 3, 3, 3]
  assert const.tokens_in(4) == 12
  ramp = build("tome", depth=3, image_len=20, text_len=4,
                                 tome_r=4, tome_schedule="ramp",
                                 tome_inflection=0.5)
  assert [s.merge for s in ramp.steps] == [2, 4, 6]
  listed = build("tome", depth=4, image_len=20, text_len=4,
                                   layers=(1, 3), tome_r=(5, 2),
                                   tome_schedule="list")
  assert [(s.layer, s.merge) for s in listed.steps] == [(1, 5), (3, 2)]
  capped = build("tome", depth=3, image_len=6, text_len=2,
                                   tome_r=4)
  assert [s.merge for s in capped.steps] == [3, 2, 1]  # ToMe caps r


def test_dynamicvit_counts_and_from_config():
  cfg = ml_collections.ConfigDict(dict(method="dynamicvit", layers=(3, 6, 9),
                                       keep_ratios=(0.7, 0.49, 0.343)))
  s = from_config(cfg, depth=12, image_len=145, text_len=32)
  # DynamicViT's int(N * rho) of the 144 patches (100.8, 70.56, 49.39), + CLS.
  assert [s_.keep for s_ in s.steps] == [101, 71, 50]
  # Pruned before layers 3, 6, 9: those layers already see fewer tokens.
  seen = [177] * 3 + [133] * 3 + [103] * 3 + [82] * 3
  assert s.flops_proxy() == pytest.approx(sum(seen) / (12 * 177))
  with pytest.raises(ValueError, match="0 image patches"):
    build("dynamicvit", depth=4, image_len=9, text_len=3,
                            layers=(1,), keep_ratios=(0.1,))
  none = from_config(ml_collections.ConfigDict(dict(method="none")),
                     depth=12, image_len=145, text_len=32)
  assert none.steps == () and none.flops_proxy() == 1.0


@pytest.mark.parametrize("kwargs,field", [
    (dict(prune_ratio=1.0), "prune_ratio"),
    (dict(prune_ratio=-0.1), "prune_ratio"),
    (dict(image_merge_ratio=1.5), "image_merge_ratio"),
    (dict(text_merge_ratio=-1), "text_merge_ratio"),
    (dict(layers=(2, 12)), "layers"),
    (dict(layers=(-1,)), "layers"),
    (dict(layers=(2, 2)), "layers"),
    # Past what matching can merge: the sized semantics raise (the official
    # clamps, as PuMer's code).
    (dict(image_merge_ratio=0.6, semantics="sized"), "image_merge_ratio"),
    (dict(text_merge_ratio=0.55, semantics="sized"), "text_merge_ratio"),
    (dict(layers=(), prune_ratio=0.1), "layers"),
])
def test_bad_configs_name_the_field(kwargs, field):
  base = dict(depth=12, image_len=145, text_len=32, layers=(2, 5, 8))
  base.update(kwargs)
  with pytest.raises(ValueError, match=field):
    build("pumer", **base)


def test_bad_method_and_tome_fields():
  with pytest.raises(ValueError, match="reduce.method"):
    build("fast", depth=2, image_len=5, text_len=3)
  with pytest.raises(ValueError, match="tome_schedule"):
    build("tome", depth=2, image_len=5, text_len=3,
                            tome_r=1, tome_schedule="cosine")
  with pytest.raises(ValueError, match="tome_r"):
    build("tome", depth=2, image_len=5, text_len=3,
                            tome_r=(1,), tome_schedule="list")
  with pytest.raises(ValueError, match="keep_ratios"):
    build("dynamicvit", depth=4, image_len=9, text_len=3,
                            layers=(1, 2), keep_ratios=(0.5, 0.7))


def test_text_cls_is_protected_even_when_image_cls_is_not():
  # 32 text tokens: 16 can merge without protection, 15 with the CLS kept.
  with pytest.raises(ValueError, match="text_merge_ratio"):
    build(
        "pumer", depth=12, image_len=145, text_len=32, layers=(2,),
        text_merge_ratio=0.5, protect_cls=False, semantics="sized")
  s = build(
      "pumer", depth=12, image_len=9, text_len=4, layers=(0,),
      image_merge_ratio=0.5, protect_cls=False, semantics="sized")
  assert s.steps[0].merge_image == 4  # round(4.5): all of set A may merge


def tome_parse_r(num_layers, r, inflect):
  """ToMe's `parse_r` for an (r, inflection) pair, as its code computes it."""
  min_val = int(r * (1.0 - inflect))
  max_val = 2 * r - min_val
  step = (max_val - min_val) / (num_layers - 1)
  return [int(min_val + step * i) for i in range(num_layers)]


@pytest.mark.parametrize("r, inflection, depth", [
    (13, -0.5, 12), (16, -0.5, 12), (8, 0.3, 12), (7, 0.5, 6), (5, 0.0, 4),
    (13, -0.5, 2)])
def test_tome_ramp_is_tomes_parse_r(r, inflection, depth):
  """Truncate-then-interpolate: r=13, inflection -0.5 gives ToMe's
  19, 17, 16, 15, ... (interpolating the exact ends would give 19, 18, ...)."""
  image_len = 1 + 8 * 12 * 12  # plenty of tokens: no cap applies
  ramp = build("tome", depth=depth, image_len=image_len,
                                 text_len=0, tome_r=r, tome_schedule="ramp",
                                 tome_inflection=inflection)
  assert [s.merge for s in ramp.steps] == tome_parse_r(depth, r, inflection)
  if (r, inflection, depth) == (13, -0.5, 12):
    assert [s.merge for s in ramp.steps][:4] == [19, 17, 16, 15]


def test_legacy_flat_reduce_blocks_are_read():
  """Files written before each method had its own fields hold one flat
  record of every method's fields; saved models and run configs of then
  still load, but a foreign key off its old default is an error."""
  from pumer_jax.models import saved
  from pumer_jax.train.finetune import build_model_config
  from train_fixtures import tiny_config
  legacy = dict(saved.LEGACY_REDUCE_DEFAULTS, method="pumer", layers=[1],
                prune_ratio=0.2)
  assert saved.reduce_from_dict(legacy) == ReduceConfig(
      method="pumer", layers=(1,), prune_ratio=0.2)
  c = tiny_config()
  with c.unlocked():
    c.reduce = ml_collections.ConfigDict(legacy)
  assert build_model_config(c).reduce.prune_ratio == 0.2
  with pytest.raises(ValueError, match=r"unknown keys \['tome_r'\]"):
    saved.reduce_from_dict(dict(legacy, tome_r=3))
