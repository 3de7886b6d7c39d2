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

import os
from collections.abc import Sequence

from etils import epath
import tensorflow_datasets as tfds


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
