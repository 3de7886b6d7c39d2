r"""The real builders at their real per-item sizes: prepare time, bytes per
question, loader throughput, and what they imply for the full datasets.

  python benchmarks/data_scale.py [--images 2000] [--workdir runs/data_scale] \
      [--out_dir benchmarks/results] [--stem data_scale_cpu] [--batches 12]

Writes official-format VQA v2 and SNLI-VE files for `--images` images each
(VQA: COCO-like 640x480 JPEGs of about COCO's mean file size, 5.4 questions
per image with 10 answers; SNLI-VE: 500x375 JPEGs, 17.8 hypotheses per
image; NLVR2: 500x375 PNG pairs, 1.68 sentences per pair), prepares them with the builders as they are (each image once, in an
image table) and as version 1.0.0 stored them (the JPEG inside every
question: `PerQuestion*` below), and times grain loaders over the prepared
VQA v2 at 0, 1 and 2 workers with ViLT's (384x384, ViLT normalisation) and
METER's (384x384, CLIP normalisation) preprocessing. No config has
augmentation, so none is timed. The images are 64 distinct synthetic
photographs (smooth colour fields with sensor-like noise) written under
every image id: the sizes and decode costs of real ones, not their content.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import shutil
import time

from absl import flags
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from pumer_jax.bench.measure import cpu_model
from pumer_jax.bench.report import write_result
from pumer_jax.data import nlvr2, pipeline, snli_ve, tokenizers, vqa_v2

# The official releases (visualqa.org, cocodataset.org, SNLI-VE's README).
VQA_FULL = dict(images=82_783 + 40_504, questions=443_757 + 214_354,
                image_bytes=13.5e9 + 6.6e9)  # train2014 + val2014
SNLI_VE_FULL = dict(images=31_783, questions=529_527 + 17_858 + 17_901)
# NLVR2 (Suhr et al. 2019, Table 3): 107,292 examples over 127,502 images,
# two per example: each image serves 1.68 examples.
NLVR2_FULL = dict(images=127_502, questions=107_292)
QUESTIONS_PER_IMAGE = {"vqa_v2": VQA_FULL["questions"] / VQA_FULL["images"],
                       "snli_ve": SNLI_VE_FULL["questions"] / SNLI_VE_FULL["images"],
                       "nlvr2": NLVR2_FULL["questions"] / NLVR2_FULL["images"]}
FULL = {"vqa_v2": VQA_FULL, "snli_ve": SNLI_VE_FULL, "nlvr2": NLVR2_FULL}
# What one H200 would consume: ViLT-B/32's VQA forward is 33.9 GFLOP per
# example (compiled, this project's bench); a train step about 3x that; at
# an assumed 40% of the 989 TFLOP/s bf16 dense peak.
H200_FLOPS = 0.4 * 989e12
VILT_FORWARD_FLOP = 33.9e9
WORDS = ("what", "color", "is", "the", "bus", "how", "many", "people", "are",
         "there", "a", "man", "riding", "horse", "?", "dog", "on", "left")


def photo(rng: np.random.Generator, size: tuple[int, int], noise: float) -> bytes:
  """A JPEG of a smooth random colour field plus noise (size = (W, H))."""
  base = Image.fromarray(rng.integers(0, 256, (12, 16, 3)).astype(np.uint8))
  pixels = np.asarray(base.resize(size, Image.BICUBIC), np.float32)
  pixels += rng.normal(0, noise, pixels.shape)
  buffer = io.BytesIO()
  Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
      buffer, format="JPEG", quality=90)
  return buffer.getvalue()


def _counts(num_images: int, per_image: float) -> list[int]:
  """Questions per image, averaging `per_image` (e.g. 5, 5, 6, 5, 6, ...)."""
  totals = np.floor(np.arange(1, num_images + 1) * per_image).astype(int)
  return list(np.diff(totals, prepend=0))


def write_vqa(root: pathlib.Path, num_images: int, subset: str = "train2014",
              seed: int = 0) -> int:
  """Official VQA v2 files of one COCO subset; returns the images' bytes."""
  rng = np.random.default_rng(seed)
  pool = [photo(rng, (640, 480), 17.0) for _ in range(64)]
  folder = root / subset
  folder.mkdir(parents=True)
  questions, annotations, total = [], [], 0
  for i, count in enumerate(_counts(num_images, QUESTIONS_PER_IMAGE["vqa_v2"])):
    image_id = 1000 + i
    data = pool[i % len(pool)]
    (folder / f"COCO_{subset}_{image_id:012d}.jpg").write_bytes(data)
    total += len(data)
    for k in range(count):
      qid = image_id * 100 + k
      text = " ".join(rng.choice(WORDS, 6)) + " ?"
      questions.append({"image_id": image_id, "question": text, "question_id": qid})
      annotations.append({
          "question_id": qid, "image_id": image_id, "answer_type": "other",
          "multiple_choice_answer": "yes", "question_type": "what",
          "answers": [{"answer": str(rng.choice(["yes", "no", "2", "red"])),
                       "answer_confidence": "yes", "answer_id": j + 1}
                      for j in range(10)]})
  (root / f"v2_OpenEnded_mscoco_{subset}_questions.json").write_text(
      json.dumps({"questions": questions, "data_subtype": subset}))
  (root / f"v2_mscoco_{subset}_annotations.json").write_text(
      json.dumps({"annotations": annotations, "data_subtype": subset}))
  return total


def write_vqa_splits(root: pathlib.Path, num_images: int) -> int:
  """train2014, and val2014 a tenth as large (the default config reads both)."""
  return (write_vqa(root, num_images) +
          write_vqa(root, max(num_images // 10, 1), "val2014", seed=5))


def write_snli_ve(root: pathlib.Path, num_images: int, seed: int = 1) -> int:
  """Official SNLI-VE files over Flickr30k-like images; the images' bytes."""
  rng = np.random.default_rng(seed)
  pool = [photo(rng, (500, 375), 17.0) for _ in range(64)]
  folder = root / "flickr30k_images"
  folder.mkdir(parents=True)
  total, lines = 0, {"train": [], "dev": [], "test": []}
  for i, count in enumerate(_counts(num_images, QUESTIONS_PER_IMAGE["snli_ve"])):
    data = pool[i % len(pool)]
    (folder / f"{10_000 + i}.jpg").write_bytes(data)
    total += len(data)
    split = {1: "dev", 2: "test"}.get(i % 10, "train")  # 80/10/10
    for k in range(count):
      lines[split].append(json.dumps({
          "Flickr30K_ID": str(10_000 + i), "pairID": f"{10_000 + i}.jpg#{k}",
          "sentence1": "A man rides a horse.", "sentence2": "Someone rides.",
          "gold_label": snli_ve.LABELS[k % 3]}))
  for split, rows in lines.items():
    (root / f"snli_ve_{split}.jsonl").write_text("\n".join(rows) + "\n")
  return total


def write_nlvr2(root: pathlib.Path, num_images: int, seed: int = 2) -> int:
  """Official NLVR2 files: image pairs as PNG (500x375 photographs), each
  pair with 1.68 sentences on average (each example reads two images, each
  image serves 1.68 examples)."""
  rng = np.random.default_rng(seed)
  pool = []
  for _ in range(16):
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo(rng, (500, 375), 17.0))).save(buffer, format="PNG")
    pool.append(buffer.getvalue())
  total, lines = 0, {"train": [], "dev": [], "test1": []}
  pairs = max(num_images // 2, 1)
  sentences = _counts(pairs, 2 * QUESTIONS_PER_IMAGE["nlvr2"])
  for i, count in enumerate(sentences):
    split = {1: "dev", 2: "test1"}.get(i % 10, "train")  # 80/10/10
    folder = root / split / (str(i % 100) if split == "train" else "")
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"{split}-{i}-0"
    for side in (0, 1):
      data = pool[(2 * i + side) % len(pool)]
      (folder / f"{prefix}-img{side}.png").write_bytes(data)
      total += len(data)
    for k in range(count):
      row = {"identifier": f"{prefix}-{k}", "sentence": "The left image has two dogs.",
             "label": ["True", "False"][k % 2]}
      if split == "train":
        row["directory"] = i % 100
      lines[split].append(json.dumps(row))
  for split, rows in lines.items():
    (root / f"{split}.json").write_text("\n".join(rows) + "\n")
  return total


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


class PerQuestionVqaV2(_PerQuestion, vqa_v2.VqaV2, skip_registration=True):
  pass


class PerQuestionSnliVe(_PerQuestion, snli_ve.SnliVe, skip_registration=True):
  pass


class PerQuestionNlvr2(_PerQuestion, nlvr2.Nlvr2, skip_registration=True):
  pass


class _TimedTables:
  """Times the image tables' writing inside a preparation."""

  table_seconds = 0.0

  def write_image_tables(self, tables, splits):
    start = time.perf_counter()
    super().write_image_tables(tables, splits)
    type(self).table_seconds = time.perf_counter() - start


class TableVqaV2(_TimedTables, vqa_v2.VqaV2, skip_registration=True):
  name = "vqa_v2"


class TableSnliVe(_TimedTables, snli_ve.SnliVe, skip_registration=True):
  name = "snli_ve"


class TableNlvr2(_TimedTables, nlvr2.Nlvr2, skip_registration=True):
  name = "nlvr2"


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
  for name, write, builders in (
      ("vqa_v2", write_vqa_splits, (TableVqaV2, PerQuestionVqaV2)),
      ("snli_ve", write_snli_ve, (TableSnliVe, PerQuestionSnliVe)),
      ("nlvr2", write_nlvr2, (TableNlvr2, PerQuestionNlvr2))):
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
