r"""The real builders at their real per-item sizes: prepare time, bytes per
question, loader throughput, and what they imply for the full datasets.

  python benchmarks/data_scale.py [--images 2000] [--workdir runs/data_scale] \
      [--out_dir benchmarks/results] [--stem data_scale_cpu] [--batches 12]

Writes official-format files for `--images` images per dataset
(`official_fixtures.py`: real per-item sizes and counts), prepares them as the builders
do now (each image once, in an image table) and as version 1.0.0 did (the
image inside every record: `_PerQuestion`), and times grain loaders over
VQA v2 at 0, 1 and 2 workers with ViLT's and METER's preprocessing (384x384;
ViLT's and CLIP's normalisation; no config augments).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import time
import types

from absl import flags
import tensorflow_datasets as tfds

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from official_fixtures import (  # noqa: E402 (a sibling script's module)
    FULL, WORDS, write_nlvr2, write_snli_ve, write_vqa_splits)
from pumer_jax.bench.measure import cpu_model
from pumer_jax.bench.report import write_result
from pumer_jax.data import nlvr2, pipeline, snli_ve, tokenizers, vqa_v2

# What one H200 would consume: ViLT-B/32's VQA forward is 33.9 GFLOP per
# example (compiled, this project's bench); a train step about 3x that; at
# an assumed 40% of the 989 TFLOP/s bf16 dense peak.
H200_FLOPS = 0.4 * 989e12
VILT_FORWARD_FLOP = 33.9e9
class _PerQuestion:
  """Version 1.0.0's layout: each record reads its image file and holds its
  bytes (the image tables are not written; the manifest names the files)."""

  def write_image_tables(self, tables, splits):
    self._files = tables
    self._splits = splits

  def _split_generators(self, dl_manager):
    generators = super()._split_generators(dl_manager)
    return {split: self._inline(gen, self._files[self._splits[split]])
            for split, gen in generators.items()}

  def _inline(self, generator, files):
    for key, record in generator:
      for field, key_field in self.IMAGE_FIELDS.items():
        record[field] = files[str(record[key_field])].read_bytes()
      yield key, record

  def as_data_source(self, split=None, *, decoders=None, **kwargs):
    return self.as_text_source(split, decoders=decoders, **kwargs)


class _TimedTables:
  """Times the image tables' writing inside a preparation."""

  table_seconds = 0.0

  def write_image_tables(self, tables, splits):
    start = time.perf_counter()
    super().write_image_tables(tables, splits)
    type(self).table_seconds = time.perf_counter() - start


def _variant(mixin: type, builder: type, prefix: str) -> type:
  """`builder` with `mixin` in front, unregistered, under its dataset name."""
  return types.new_class(f"{prefix}{builder.__name__}", (mixin, builder),
                         {"skip_registration": True},
                         lambda ns: ns.update(name=builder.name))


# dataset -> (fixture writer, its builder as now, as 1.0.0 stored it)
DATASETS = {name: (write, _variant(_TimedTables, cls, "Table"),
                   _variant(_PerQuestion, cls, "PerQuestion"))
            for name, write, cls in (("vqa_v2", write_vqa_splits, vqa_v2.VqaV2),
                                     ("snli_ve", write_snli_ve, snli_ve.SnliVe),
                                     ("nlvr2", write_nlvr2, nlvr2.Nlvr2))}


def _prepare(builder_class, data_dir: pathlib.Path, manual: pathlib.Path,
             read_processes: int = 0) -> tuple[dict, tfds.core.DatasetBuilder]:
  start = time.perf_counter()
  builder = builder_class(data_dir=str(data_dir))
  builder.read_processes = read_processes
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual)))
  seconds = time.perf_counter() - start
  size = sum(p.stat().st_size for p in pathlib.Path(builder.data_path).iterdir())
  questions = sum(s.num_examples for s in builder.info.splits.values())
  return dict(seconds=seconds, bytes=size, questions=questions,
              table_seconds=getattr(builder_class, "table_seconds", 0.0),
              seconds_per_10k_questions=seconds / questions * 1e4,
              bytes_per_question=size / questions), builder


def _vocab(path: pathlib.Path) -> pathlib.Path:
  path.write_text("\n".join([*tokenizers.BERT_SPECIAL_TOKENS, *WORDS]) + "\n")
  return path


def loader_throughput(builder, tokenizer, *, normalize: str, workers: int,
                      batches: int, batch_size: int = 32) -> float:
  """Training examples/s of the grain loader (after one warm-up batch)."""
  loader = pipeline.make_loader(
      builder, "train", batch_size=batch_size, image_size=(384, 384),
      text_length=40, tokenizer=tokenizer, task="vqa", train=True, seed=0,
      normalize=normalize, answer_vocab=["yes", "no", "2", "red"],
      shard_index=0, shard_count=1, worker_count=workers)
  iterator = iter(loader)
  for _ in range(2):  # start the workers and fill their buffers
    next(iterator)
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  return batches * batch_size / (time.perf_counter() - start)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--images", type=int, default=2000)
  parser.add_argument("--per_question_images", type=int, default=400,
                      help="the 1.0.0 layout is also prepared at this size, "
                      "under TFDS's 1 GB in-memory shuffle buffer")
  parser.add_argument("--processes", type=int, default=2,
                      help="VQA v2's image tables are also written with the "
                      "files read by this many processes")
  parser.add_argument("--batches", type=int, default=12)
  parser.add_argument("--workers", default="0,1,2",
                      help="grain worker counts to time the loader at ('': none)")
  parser.add_argument("--datasets", default="vqa_v2,snli_ve,nlvr2")
  parser.add_argument("--workdir", default="runs/data_scale")
  parser.add_argument("--out_dir", default="benchmarks/results")
  parser.add_argument("--stem", default="data_scale_cpu")
  args = parser.parse_args(argv)
  flags.FLAGS(["data_scale"])  # grain's worker processes read absl flags
  work = pathlib.Path(args.workdir)
  if work.exists():
    shutil.rmtree(work)  # the benchmark's own scratch files, rebuilt each run
  rows, result = [], dict(cpu=cpu_model(), cores=os.cpu_count(), images=args.images,
                          per_question_images=args.per_question_images)
  prepared = {}
  for name, (write, *builders) in DATASETS.items():
    if name not in args.datasets.split(","):
      continue
    for images in sorted({args.images, args.per_question_images}, reverse=True):
      manual = work / f"{name}_{images}_manual"
      image_bytes = write(manual, images)
      layouts = [(builders[0], "image table", 0), (builders[1], "per question", 0)]
      if name == "vqa_v2" and images == args.images and args.processes > 1:
        layouts.insert(1, (builders[0], f"image table, {args.processes} processes",
                           args.processes))
      for builder_class, layout, processes in layouts:
        where = work / f"{name}_{images}_{layout.replace(' ', '_').replace(',', '')}"
        try:
          run, prepared[name, layout, images] = _prepare(builder_class, where, manual,
                                                         processes)
        except ModuleNotFoundError as e:
          # TFDS spills a split's shuffle buffer to disk past 1 GB, through
          # tf.io.gfile: TensorFlow, which this project does not install.
          run = dict(error=f"{type(e).__name__}: {e}")
          print(f"{name:8s} {layout:13s} {images} images: fails ({run['error']})")
          rows.append(dict(dataset=name, layout=layout, images=images,
                           image_bytes=image_bytes, **run))
          continue
        rows.append(dict(dataset=name, layout=layout, images=images,
                         image_bytes=image_bytes,
                         bytes_over_images=run["bytes"] / image_bytes, **run))
        print(f"{name:8s} {layout:13s} {run['questions']:7d} q  "
              f"{run['seconds']:7.1f} s  {run['bytes_per_question'] / 1e3:8.1f} kB/q  "
              f"x{run['bytes'] / image_bytes:.2f} the images")
  result["prepare"] = rows
  tokenizer = tokenizers.bert_tokenizer(_vocab(work / "vocab.txt"))
  builder = prepared.get(("vqa_v2", "image table", args.images))
  worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
  loads = []
  for model, normalize in (("vilt", "vilt"), ("meter", "clip")):
    for workers in worker_counts if builder is not None else ():
      rate = loader_throughput(builder, tokenizer, normalize=normalize,
                               workers=workers, batches=args.batches)
      loads.append(dict(model=model, normalize=normalize, workers=workers,
                        examples_per_s=rate))
      print(f"loader {model:5s} workers={workers}: {rate:7.1f} examples/s")
  result["loader"] = loads
  result["full_size"] = full_size(rows, loads)
  write_result(args.out_dir, args.stem, result, markdown(result).splitlines())
  return result


def full_size(rows: list[dict], loads: list[dict]) -> dict:
  """The measured rates scaled to the full datasets, a 16-core host and one
  H200 (the fixtures keep the real questions per image, so the per-question
  figures scale with the dataset)."""
  out = {}
  for row in rows:
    # Failed runs scale to nothing; the processes' start-up cost is fixed.
    if "error" in row or "processes" in row["layout"]:
      continue
    full = FULL[row["dataset"]]
    image_bytes = full.get("image_bytes")
    if image_bytes is None:  # Flickr30k, NLVR2: the fixture's mean image size
      image_bytes = row["image_bytes"] / row["images"] * full["images"]
    key = f"{row['dataset']} {row['layout']}"
    if key in out:  # rows run largest first: keep the largest measured
      continue
    out[key] = dict(
        prepare_hours=row["seconds_per_10k_questions"] * full["questions"] / 1e4 / 3600,
        disk_gb=row["bytes_over_images"] * image_bytes / 1e9,
        from_images=row["images"])
  h200 = dict(forward=H200_FLOPS / VILT_FORWARD_FLOP,
              train_step=H200_FLOPS / (3 * VILT_FORWARD_FLOP))
  loader = {}
  for model in ("vilt", "meter"):
    by_workers = {l["workers"]: l["examples_per_s"] for l in loads
                  if l["model"] == model and l["workers"] > 0}
    if not by_workers:  # in-process threads only: no per-worker rate
      continue
    # One worker on a core of its own (here: the main process has the
    # other); with every core busy (2 workers on 2 cores) the rate per
    # worker also pays for the main process.
    most = 1 if 1 in by_workers else max(by_workers)
    per_worker = by_workers[most] / most
    loader[model] = dict(
        per_worker=per_worker, measured_workers=most,
        host_16_cores=15 * per_worker,
        workers_for_h200_train=h200["train_step"] / per_worker,
        workers_for_h200_forward=h200["forward"] / per_worker)
  return dict(datasets=out, h200_examples_per_s=h200, loader=loader)


def markdown(result: dict) -> str:
  lines = [f"# The real builders at full per-item size ({result['images']} images "
           f"per dataset; {result['cpu']}, {result['cores']} cores)", "",
           "| dataset | layout | images | questions | prepare s | of which image tables | "
           "s per 10k questions | kB per question | bytes / image bytes |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in result["prepare"]:
    if "error" in r:
      lines.append(f"| {r['dataset']} | {r['layout']} | {r['images']} | | fails: "
                   f"{r['error']} (TFDS spills its shuffle buffer past 1 GB through "
                   "tf.io.gfile) | | | | |")
      continue
    lines.append(f"| {r['dataset']} | {r['layout']} | {r['images']} | {r['questions']} | "
                 f"{r['seconds']:.1f} | "
                 f"{r['table_seconds']:.1f} | "
                 f"{r['seconds_per_10k_questions']:.1f} | {r['bytes_per_question'] / 1e3:.1f} | "
                 f"{r['bytes_over_images']:.2f} |")
  lines += ["", "Loader (VQA v2 train, batch 32, 384x384, text 40):", "",
            "| model | normalisation | workers | examples/s |", "|---|---|---|---|"]
  for l in result["loader"]:
    lines.append(f"| {l['model']} | {l['normalize']} | {l['workers']} | "
                 f"{l['examples_per_s']:.1f} |")
  full = result["full_size"]
  lines += ["", "Scaled to the full datasets (VQA v2 train+val: 123,287 COCO images, "
            "20.1 GB; SNLI-VE: 31,783 Flickr30k images, NLVR2: 127,502 images, both at "
            "the fixture's mean size):", "",
            "| dataset | layout | measured at (images) | prepare (h, this CPU) | disk (GB) |",
            "|---|---|---|---|---|"]
  for name, d in full["datasets"].items():
    dataset, layout = name.split(" ", 1)
    lines.append(f"| {dataset} | {layout} | {d['from_images']} | {d['prepare_hours']:.2f} | "
                 f"{d['disk_gb']:.1f} |")
  h200 = full["h200_examples_per_s"]
  lines += ["", f"One H200 (ViLT-B/32 VQA, 33.9 GFLOP per forward, assumed 40% of 989 "
            f"TFLOP/s bf16): {h200['forward']:.0f} examples/s forward, "
            f"{h200['train_step']:.0f} per train step (3x the forward).", "",
            "| model | examples/s per worker | 16-core host (15 workers) | "
            "workers to feed a train step | workers to feed a forward |",
            "|---|---|---|---|---|"]
  for model, d in full["loader"].items():
    lines.append(f"| {model} | {d['per_worker']:.1f} | {d['host_16_cores']:.0f} | "
                 f"{d['workers_for_h200_train']:.0f} | {d['workers_for_h200_forward']:.0f} |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()
