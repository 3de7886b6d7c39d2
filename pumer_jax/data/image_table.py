"""Each image stored once: an image table beside a dataset's text records.

VQA v2 asks about 5.4 questions per COCO image, SNLI-VE about 17 hypotheses
per Flickr30k image, and NLVR2 reuses each image across sentences: a record
per question that carries its image stores each JPEG five to seventeen
times. Here a builder's records hold only the image's key (VQA's
`image_id`, ...); the encoded files, as released, sit once each in an
image table (one array_record file per image set, one raw file per record)
in the prepared dataset's own directory, with the list of keys in row order.
`as_data_source` joins the two by random access, so a reader still sees one
record per question with its `image` (as TFDS would give it: decoded, or
bytes under `tfds.decode.SkipDecoding()`), and shuffling stays over
questions.

Files, in the dataset's version directory (moved there with the rest of the
preparation, so an interrupted one leaves nothing half-written):
  images-{table}.array_record   the encoded images, one per record
  images-{table}.keys.json      ["<key of row 0>", "<key of row 1>", ...]
  image_tables.json             {"splits": {split: table}, "fields": {...}}
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from array_record.python import array_record_data_source, array_record_module
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

MANIFEST = "image_tables.json"


def table_path(directory: epath.PathLike, table: str) -> epath.Path:
  return epath.Path(directory) / f"images-{table}.array_record"


def keys_path(directory: epath.PathLike, table: str) -> epath.Path:
  return epath.Path(directory) / f"images-{table}.keys.json"


def read_bytes(path: epath.PathLike) -> bytes:
  return epath.Path(path).read_bytes()


def _contents(paths: list[epath.Path], processes: int) -> Iterable[bytes]:
  """The files' bytes in order; read by `processes` spawned processes when
  > 1 (latency-bound storage: a network filesystem, a bucket), else here."""
  if processes <= 1 or len(paths) < 16 * processes:
    yield from map(read_bytes, paths)
    return
  with multiprocessing.get_context("spawn").Pool(processes) as pool:
    yield from pool.imap(read_bytes, paths, chunksize=32)


def write_table(directory: epath.PathLike, table: str,
                files: Iterable[tuple[str, epath.Path]],
                processes: int = 0) -> int:
  """Writes the `(key, path)` files' bytes as table `table`; returns bytes.

  Keys must be unique: an image named twice is a bug in the caller (it is
  the duplication this module exists to remove). `processes` > 1 reads the
  files in that many processes (the writer stays one, in order).
  """
  files = list(files)
  keys: list[str] = []
  seen: set[str] = set()
  written = 0
  # One record per group for random access; the files are JPEG/PNG already,
  # so no compression (array_record's default brotli halves the write rate
  # and saves nothing).
  writer = array_record_module.ArrayRecordWriter(
      os.fspath(table_path(directory, table)), "group_size:1,uncompressed")
  try:
    for key, _ in files:
      if key in seen:
        raise ValueError(f"image table {table!r}: key {key!r} given twice.")
      seen.add(key)
    for (key, _), data in zip(files, _contents([p for _, p in files], processes)):
      writer.write(data)
      keys.append(key)
      written += len(data)
  finally:
    writer.close()
  keys_path(directory, table).write_text(json.dumps(keys))
  return written


def write_manifest(directory: epath.PathLike, splits: Mapping[str, str],
                   fields: Mapping[str, str]) -> None:
  """Records which table each split reads and each image field's key field."""
  (epath.Path(directory) / MANIFEST).write_text(json.dumps(
      {"splits": dict(splits), "fields": dict(fields)}, indent=1))


def base_splits(split: Any) -> list[str]:
  """The splits an expression reads: "train[:10%]+validation" -> ["train",
  "validation"] (a sliced split reads its whole split's table)."""
  return [part.split("[", 1)[0].strip() for part in str(split).split("+")]


class ImageTable:
  """Random access to one table's images by key (pickles for grain workers)."""

  def __init__(self, directory: epath.PathLike, table: str):
    self.path = table_path(directory, table)
    index_file = keys_path(directory, table)
    if not self.path.exists() or not index_file.exists():
      raise FileNotFoundError(
          f"image table {table!r} is missing from {directory} ({self.path.name} "
          f"or {index_file.name}): the preparation was interrupted or the "
          "files were removed; delete the dataset's directory and prepare it "
          "again.")
    keys = json.loads(index_file.read_text())
    self.rows = {key: row for row, key in enumerate(keys)}
    self._source = None

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, key: str) -> bytes:
    row = self.rows.get(key)
    if row is None:
      raise KeyError(f"{self.path.name} has no image {key!r}.")
    try:
      if self._source is None:
        self._source = array_record_data_source.ArrayRecordDataSource(
            [os.fspath(self.path)])
      return self._source[row]
    except RuntimeError as e:  # array_record's error for a damaged file
      raise RuntimeError(
          f"image {key!r} (row {row} of the image table {self.path}) could "
          f"not be read ({str(e)[:200]}); the table is truncated or corrupt") from e

  def __getstate__(self):
    return dict(self.__dict__, _source=None)


class Tables:
  """Several tables looked up as one by key (a combined split, e.g.
  "train+validation", reads the tables of both; keys never repeat across
  a dataset's tables: COCO ids, Flickr30k ids, NLVR2 file names)."""

  def __init__(self, tables: Sequence[ImageTable]):
    self.tables = list(tables)

  def __getitem__(self, key: str) -> bytes:
    for table in self.tables:
      if key in table.rows:
        return table[key]
    names = ", ".join(t.path.name for t in self.tables)
    raise KeyError(f"no image {key!r} in {names}: the record names an image "
                   "its split's table does not hold; prepare the dataset again.")

  @property
  def names(self) -> str:
    return "+".join(t.path.name for t in self.tables)


class JoinedSource(Sequence):
  """One split's text records with their images filled in from the tables.

  `fields` maps each image field (e.g. "image") to the record field holding
  its key ("image_id"); `decode[field]` is a function from encoded bytes to
  what a reader gets (the TFDS feature's decoder), or None for the bytes.
  """

  def __init__(self, records: Sequence[Mapping[str, Any]], table: Tables,
               fields: Mapping[str, str], decode: Mapping[str, Any]):
    self.records = records
    self.table = table
    self.fields = dict(fields)
    self.decode = dict(decode)

  def __len__(self) -> int:
    return len(self.records)

  # What names a record's file in error messages (`pipeline.record_file`).
  @property
  def dataset_info(self):
    return self.records.dataset_info

  @property
  def split(self):
    return self.records.split

  def _join(self, record: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(record)
    for field, key_field in self.fields.items():
      key = record[key_field]
      key = key.decode() if isinstance(key, bytes) else str(key)
      data = self.table[key]
      decode = self.decode.get(field)
      out[field] = data if decode is None else decode(data)
    return out

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self[i] for i in range(*index.indices(len(self)))]
    return self._join(self.records[index])

  def __iter__(self):
    # Sequence's default stops at an IndexError; TFDS raises ValueError.
    return (self[i] for i in range(len(self)))

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    getitems = getattr(self.records, "__getitems__", None)
    records = (getitems(indices) if getitems is not None
               else [self.records[i] for i in indices])
    return [self._join(r) for r in records]

  def __repr__(self) -> str:
    return f"JoinedSource({len(self)} records, images from {self.table.names})"


def joined(sources: Any, split: Any, directory: epath.PathLike,
           image_features: Mapping[str, tfds.features.Image],
           decoders: Mapping[str, Any] | None) -> Any:
  """Wraps `as_data_source`'s result (one source, a list or a dict by split)."""
  manifest_file = epath.Path(directory) / MANIFEST
  if not manifest_file.exists():
    raise FileNotFoundError(
        f"{manifest_file} is missing: this dataset was prepared without its "
        "image tables (an older version or an interrupted run); delete "
        f"{directory} and prepare it again.")
  manifest = json.loads(manifest_file.read_text())
  decode = {}
  for field, feature in image_features.items():
    skip = isinstance((decoders or {}).get(field), tfds.decode.SkipDecoding)
    decode[field] = None if skip else feature.decode_example_np
  tables: dict[str, ImageTable] = {}

  def wrap(source, name):
    names = []
    for split_name in base_splits(name):
      if split_name not in manifest["splits"]:
        raise ValueError(f"split {split_name!r} has no image table in "
                         f"{manifest_file} (it has {sorted(manifest['splits'])}).")
      names.append(manifest["splits"][split_name])
    for table in names:
      if table not in tables:
        tables[table] = ImageTable(directory, table)
    return JoinedSource(source, Tables([tables[t] for t in dict.fromkeys(names)]),
                        manifest["fields"], decode)

  if isinstance(sources, Mapping):
    return {name: wrap(s, name) for name, s in sources.items()}
  if isinstance(split, (list, tuple)):
    return [wrap(s, name) for s, name in zip(sources, split)]
  return wrap(sources, split)
