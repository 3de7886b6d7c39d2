"""What every builder here shares: array_record output, and finding manual files.

`ArrayRecordBuilder` makes `array_record` the default file format (read with
`tfds.data_source`, no TensorFlow needed) and knows the configs a run builds.

The real datasets (VQA v2, SNLI-VE, NLVR2, Flickr30k) are large downloads,
some behind request forms, that this package never fetches itself. Each
builder reads them from TFDS's `manual_dir` under their official names, and
these helpers
turn a missing directory or file into an error that names the file expected
and where to get it, instead of a bare traceback from deep inside TFDS.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from etils import epath
import tensorflow_datasets as tfds

from pumer_jax.data import image_table


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A GeneratorBasedBuilder that writes array_record unless told otherwise.

  Configs built from a run config (`custom_config`) are known to the class,
  so TFDS treats them as its own (it warns about any other, with the whole
  config, every time a builder is made).
  """

  # No download checksums to look up next to the module.
  code_path = None
  _custom_configs: dict[str, tfds.core.BuilderConfig] = {}

  def __init__(self, *, file_format: str = "array_record", **kwargs):
    super().__init__(file_format=file_format, **kwargs)

  @classmethod
  def custom_config(cls, config_cls: type, name: str, **fields
                    ) -> tfds.core.BuilderConfig:
    """The builder config `config_cls(name=name, **fields)`, one object per
    name (the same name with other fields is an error)."""
    known = cls._custom_configs.setdefault(cls.__name__, {})
    config = known.get(name)
    if config is None:
      config = known[name] = config_cls(name=name, **fields)
    elif any(getattr(config, k) != v for k, v in fields.items()):
      raise ValueError(f"{cls.__name__}: config name {name!r} already names "
                       "other settings; name the new ones differently.")
    return config

  @classmethod
  def get_builder_config(cls, name, version=None):
    known = cls._custom_configs.get(cls.__name__, {})
    if name in known:
      return known[name]
    return super().get_builder_config(name, version)


def manual_dir(dl_manager: tfds.download.DownloadManager) -> epath.Path:
  """Returns the manual directory, or raises FileNotFoundError.

  TFDS raises an AssertionError for a missing or empty manual directory (its
  message lists the builder's MANUAL_DOWNLOAD_INSTRUCTIONS: the official files
  and where to get them); we re-raise it as the error a user expects.
  """
  try:
    return dl_manager.manual_dir
  except AssertionError as e:
    raise FileNotFoundError(str(e)) from e


def require_file(path: epath.Path, *, dataset: str, source: str) -> epath.Path:
  """Returns `path` if it exists; else raises FileNotFoundError naming it and `source`."""
  if not path.exists():
    raise FileNotFoundError(
        f"{dataset}: expected the official file {os.fspath(path)}, which does not exist. "
        f"Download it from {source} and place it there under its official name.")
  return path


def find_file(root: epath.Path, candidates: Sequence[str], *, dataset: str,
              source: str) -> epath.Path:
  """Returns the first of `root / c` that exists (files with more than one official layout).

  Raises:
    FileNotFoundError: naming every location that was tried, and `source`.
  """
  for relative in candidates:
    path = root / relative
    if path.exists():
      return path
  tried = ", ".join(os.fspath(root / c) for c in candidates)
  raise FileNotFoundError(
      f"{dataset}: expected the official file at one of: {tried}; none exists. "
      f"Download it from {source}.")


class ImageTableBuilder(ArrayRecordBuilder, skip_registration=True):
  """A builder whose records name their images, stored once in image tables.

  `IMAGE_FIELDS` maps each image field ("image", an Image feature of the
  builder) to the record field holding its key ("image_id"). The records
  keep the image feature, empty on disk, so `info.features` still lists
  every documented field; `_split_generators` calls `write_image_tables`
  before yielding the records, and `as_data_source` fills each image in from
  its table (`data/image_table.py`): decoded, or the encoded bytes under
  `tfds.decode.SkipDecoding()`, as TFDS itself would give them.
  """

  IMAGE_FIELDS: dict[str, str] = {}
  # Processes that read the image files while the tables are written (0:
  # this one; `data.prepare_processes`). Local disks gain nothing (VQA v2's
  # tables write at the speed files are read, benchmarks/data_scale.py);
  # latency-bound storage (NFS, a mounted bucket) does.
  read_processes: int = 0

  def write_image_tables(self, tables: Mapping[str, Mapping[str, epath.Path]],
                         splits: Mapping[str, str]) -> None:
    """Writes each table's `{key: path}` files (rows sorted by key) and the
    split -> table manifest into the dataset being prepared."""
    for table, files in tables.items():
      image_table.write_table(self.data_dir, table, sorted(files.items()),
                              processes=self.read_processes)
    image_table.write_manifest(self.data_dir, splits, self.IMAGE_FIELDS)

  def as_text_source(self, split: Any = None, **kwargs) -> Any:
    """The records without their images (what building a vocabulary reads)."""
    return super().as_data_source(split, **kwargs)

  def as_data_source(self, split: Any = None, *, decoders: Any = None,
                     **kwargs) -> Any:
    """TFDS's `as_data_source`, each record with its images from the tables."""
    stored = dict(decoders or {}, **{
        field: tfds.decode.SkipDecoding() for field in self.IMAGE_FIELDS})
    sources = super().as_data_source(split, decoders=stored, **kwargs)
    images = {field: self.info.features[field] for field in self.IMAGE_FIELDS}
    return image_table.joined(sources, split, self.data_dir, images, decoders)


def skip_image_decoders(builder: tfds.core.DatasetBuilder
                        ) -> dict[str, tfds.decode.SkipDecoding]:
  """SkipDecoding for every Image feature: records then carry encoded bytes."""
  return {name: tfds.decode.SkipDecoding()
          for name, feature in builder.info.features.items()
          if isinstance(feature, tfds.features.Image)}


def read_json(path: epath.Path, *, dataset: str, source: str) -> Any:
  """The parsed JSON file, or ValueError naming it (truncated downloads)."""
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(
        f"{dataset}: {os.fspath(path)} is not valid JSON ({e.msg} at line "
        f"{e.lineno}, column {e.colno}); the file may be truncated: download "
        f"it again from {source}.") from e


def read_json_lines(path: epath.Path, *, dataset: str, source: str
                    ) -> Iterator[tuple[int, Any]]:
  """(line number, parsed row) per non-empty line, or ValueError naming the
  file and line."""
  with path.open() as f:
    for line_number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        yield line_number, json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(
            f"{dataset}: {os.fspath(path)}:{line_number} is not valid JSON "
            f"({e.msg}); the file may be truncated: download it again from "
            f"{source}.") from e
