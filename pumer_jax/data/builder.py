"""What every builder here shares: array_record output, and finding manual files.

`ArrayRecordBuilder` makes `array_record` the default file format (read with
`tfds.data_source`, no TensorFlow needed).

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
  """A GeneratorBasedBuilder that writes array_record unless told otherwise."""

  # No download checksums to look up next to the module.
  code_path = None

  def __init__(self, *, file_format: str = "array_record", **kwargs):
    super().__init__(file_format=file_format, **kwargs)


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
