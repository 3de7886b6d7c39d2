"""SNLI-VE (https://github.com/necla-ml/SNLI-VE): visual entailment on Flickr30k images.

One example per (image, hypothesis) pair: `pair_id`, `image_id` (the
Flickr30K_ID), `image` (JPEG bytes), `premise` (the SNLI caption,
sentence1), `hypothesis` (sentence2), and `label` in
entailment/neutral/contradiction. Lines without a gold label ("-", no
annotator consensus) are skipped, as in the official release's statistics.
"""

from __future__ import annotations

import json

from etils import epath
import tensorflow_datasets as tfds

from pumer_jax.data import builder

SOURCE = "https://github.com/necla-ml/SNLI-VE"
IMAGES_SOURCE = "https://shannon.cs.illinois.edu/DenotationGraph/"
LABELS = ("entailment", "neutral", "contradiction")
_SPLIT_FILES = {"train": "snli_ve_train.jsonl", "validation": "snli_ve_dev.jsonl",
                "test": "snli_ve_test.jsonl"}
# Where the Flickr30k images may be: the SNLI-VE repository's layout first,
# then the Flickr30k tarball's own folder names.
IMAGE_DIRS = ("Flickr30K/flickr30k_images", "flickr30k_images", "flickr30k-images")

MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Place the official SNLI-VE files (from {SOURCE}) in the manual directory:\n"
    + "".join(f"  {f}\n" for f in _SPLIT_FILES.values())
    + f"and the Flickr30k images (from {IMAGES_SOURCE}) as "
    + " or ".join(f"{d}/<Flickr30K_ID>.jpg" for d in IMAGE_DIRS) + ".")


class SnliVe(builder.ArrayRecordBuilder):
  """SNLI-VE hypotheses about Flickr30k images, with 3-way entailment labels."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split("\n\n")[1],
        features=tfds.features.FeaturesDict({
            "pair_id": tfds.features.Text(),
            "image_id": tfds.features.Text(),
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "premise": tfds.features.Text(),
            "hypothesis": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=LABELS),
        }),
        homepage=SOURCE,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = builder.manual_dir(dl_manager)
    files = {split: builder.require_file(root / name, dataset="snli_ve", source=SOURCE)
             for split, name in _SPLIT_FILES.items()}
    return {split: self._generate_examples(root, path) for split, path in files.items()}

  def _generate_examples(self, root: epath.Path, path: epath.Path):
    with path.open() as f:
      for line_number, line in enumerate(f, start=1):
        if not line.strip():
          continue
        row = json.loads(line)
        label = row["gold_label"]
        if label == "-":
          continue
        if label not in LABELS:
          raise ValueError(f"{path}:{line_number}: gold_label {label!r} is not one of {LABELS}.")
        image_id = str(row["Flickr30K_ID"])
        image = builder.find_file(root, [f"{d}/{image_id}.jpg" for d in IMAGE_DIRS],
                                  dataset="snli_ve", source=IMAGES_SOURCE)
        yield row["pairID"], {
            "pair_id": row["pairID"],
            "image_id": image_id,
            "image": image.read_bytes(),
            "premise": row["sentence1"],
            "hypothesis": row["sentence2"],
            "label": label,
        }
