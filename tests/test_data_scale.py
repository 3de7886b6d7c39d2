"""benchmarks/data_scale.py: its fixtures keep the official formats and the
real per-item counts, and its run writes both layouts' sizes."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _script(name):
  spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def data_scale():
  return _script("data_scale")


def test_vqa_fixture_has_the_real_counts(tmp_path):
  image_bytes = _script("official_fixtures").write_vqa(tmp_path, 50)
  questions = json.loads((tmp_path / "v2_OpenEnded_mscoco_train2014_questions.json")
                         .read_text())["questions"]
  annotations = json.loads((tmp_path / "v2_mscoco_train2014_annotations.json")
                           .read_text())["annotations"]
  assert len({q["image_id"] for q in questions}) == 50
  assert abs(len(questions) / 50 - 5.34) < 0.05  # VQA v2's questions per image
  assert {len(a["answers"]) for a in annotations} == {10}
  # COCO's files average about 160 kB.
  assert 120e3 < image_bytes / 50 < 220e3


def test_run_writes_both_layouts(data_scale, tmp_path):
  result = data_scale.main(["--images", "12", "--batches", "1", "--workers", "0",
                            "--processes", "0",
                            "--workdir", str(tmp_path / "work"),
                            "--out_dir", str(tmp_path / "out")])
  layouts = {(r["dataset"], r["layout"]): r for r in result["prepare"]}
  assert set(layouts) == {(d, l) for d in ("vqa_v2", "snli_ve", "nlvr2")
                          for l in ("image table", "per question")}
  for dataset, copies in (("vqa_v2", 5.3), ("snli_ve", 17.8), ("nlvr2", 1.68)):
    ours, before = layouts[dataset, "image table"], layouts[dataset, "per question"]
    assert before["bytes_over_images"] > 0.9 * copies
    assert ours["bytes"] < before["bytes"] / min(3, copies * 0.9)
  assert (tmp_path / "out" / "data_scale_cpu.md").exists()
  assert np.isfinite([l["examples_per_s"] for l in result["loader"]]).all()
