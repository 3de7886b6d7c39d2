"""Flickr30k image-text retrieval on the Karpathy split.

One example per image: `image_id` (Karpathy's `imgid`), `filename`, `image`
(JPEG bytes), `captions` (the first `CAPTIONS_PER_IMAGE` raw sentences; every
Flickr30k image has exactly five). Splits follow `dataset_flickr30k.json`:
train (with "restval", as usual), validation (val), test. A fixed caption
count makes caption `j` of record `i` the global caption
`i * CAPTIONS_PER_IMAGE + j`, so the pipeline can enumerate every image and
every caption for the full retrieval score matrix.
"""

from __future__ import annotations

import json

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from pumer_jax.data import builder

KARPATHY_SOURCE = "https://cs.stanford.edu/people/karpathy/deepimagesent/ (caption_datasets.zip)"
IMAGES_SOURCE = "https://shannon.cs.illinois.edu/DenotationGraph/"
CAPTIONS_PER_IMAGE = 5
KARPATHY_FILE = "dataset_flickr30k.json"
# The Flickr30k image folder: the usual name, then the tarball's own.
IMAGE_DIRS = ("flickr30k_images", "flickr30k-images")
# TFDS split -> the Karpathy "split" values it collects.
_SPLITS = {"train": ("train", "restval"), "validation": ("val",), "test": ("test",)}

MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Place {KARPATHY_FILE} (Karpathy's split, from {KARPATHY_SOURCE}) in the manual "
    f"directory, and the Flickr30k images (from {IMAGES_SOURCE}) as "
    + " or ".join(f"{d}/<filename>" for d in IMAGE_DIRS) + ".")


class Flickr30k(builder.ArrayRecordBuilder):
  """Flickr30k images with their five captions, Karpathy's train/val/test split."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split("\n\n")[1],
        features=tfds.features.FeaturesDict({
            "image_id": np.int64,
            "filename": tfds.features.Text(),
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "captions": tfds.features.Sequence(tfds.features.Text(),
                                               length=CAPTIONS_PER_IMAGE),
        }),
        homepage=IMAGES_SOURCE,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = builder.manual_dir(dl_manager)
    path = builder.require_file(root / KARPATHY_FILE, dataset="flickr30k",
                                source=KARPATHY_SOURCE)
    images = json.loads(path.read_text())["images"]
    return {split: self._generate_examples(root, path, [im for im in images
                                                        if im["split"] in karpathy])
            for split, karpathy in _SPLITS.items()}

  def _generate_examples(self, root: epath.Path, path: epath.Path, images: list[dict]):
    for entry in images:
      captions = [s["raw"] for s in entry["sentences"]]
      if len(captions) < CAPTIONS_PER_IMAGE:
        raise ValueError(f"{path}: image {entry['filename']} has {len(captions)} captions; "
                         f"expected {CAPTIONS_PER_IMAGE}.")
      image = builder.find_file(root, [f"{d}/{entry['filename']}" for d in IMAGE_DIRS],
                                dataset="flickr30k", source=IMAGES_SOURCE)
      yield entry["imgid"], {
          "image_id": entry["imgid"],
          "filename": entry["filename"],
          "image": image.read_bytes(),
          "captions": captions[:CAPTIONS_PER_IMAGE],
      }
