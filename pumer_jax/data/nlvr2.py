"""NLVR2 (https://github.com/lil-lab/nlvr/tree/master/nlvr2): a sentence about two images.

One example per official line: `identifier` (e.g. "dev-850-0-0"), `sentence`,
`label` (false/true), and the left and right images `image0`, `image1` (PNG
bytes as released). The pair's images are named by the identifier without its
last "-N": `dev/dev-850-0-img0.png`; train images sit in numbered folders,
`train/{directory}/train-10171-0-img0.png`.

Each image is stored once, in an image table per split, keyed by its file
name without ".png" (`image0_id`, `image1_id`: "dev-850-0-img0"), and joined
to every sentence about it when read (`data/image_table.py`); version 1.0.0
copied both images into each sentence.
"""

from __future__ import annotations

from etils import epath
import tensorflow_datasets as tfds

from pumer_jax.data import builder

SOURCE = "https://github.com/lil-lab/nlvr/tree/master/nlvr2"
LABELS = ("false", "true")
# split -> (official json-lines file, image folder)
_SPLIT_FILES = {"train": ("train.json", "train"), "validation": ("dev.json", "dev"),
                "test": ("test1.json", "test1")}
# The image folders may sit directly in the manual directory or under images/.
_IMAGE_ROOTS = ("", "images/")

MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Place the official NLVR2 files (from {SOURCE}; the images by the form linked "
    "there) in the manual directory:\n"
    + "".join(f"  {f}\n" for f, _ in _SPLIT_FILES.values())
    + "  train/<directory>/<identifier without -N>-img0.png and -img1.png\n"
    + "  dev/<identifier without -N>-img0.png and -img1.png\n"
    + "  test1/<identifier without -N>-img0.png and -img1.png\n"
    + "(the image folders may also be under images/).")


def image_names(identifier: str) -> tuple[str, str]:
  """The left and right image file names of a pair: "dev-850-0-0" -> dev-850-0-img{0,1}.png."""
  prefix = identifier.rsplit("-", 1)[0]
  return f"{prefix}-img0.png", f"{prefix}-img1.png"


class Nlvr2(builder.ImageTableBuilder):
  """NLVR2 sentences with their image pairs and true/false labels."""

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "2.0.0": "Each image stored once, in an image table."}
  IMAGE_FIELDS = {"image0": "image0_id", "image1": "image1_id"}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    image = tfds.features.Image(shape=(None, None, 3), encoding_format="png")
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split("\n\n")[1],
        features=tfds.features.FeaturesDict({
            "identifier": tfds.features.Text(),
            "sentence": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=LABELS),
            # Stored once per image in the image tables (empty in the record).
            "image0": image,
            "image1": image,
            "image0_id": tfds.features.Text(),
            "image1_id": tfds.features.Text(),
        }),
        homepage=SOURCE,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = builder.manual_dir(dl_manager)
    tables, generators = {}, {}
    # Read and check every line and image before writing anything.
    for split, (name, folder) in _SPLIT_FILES.items():
      path = builder.require_file(root / name, dataset="nlvr2", source=SOURCE)
      rows = []
      files = tables.setdefault(folder, {})
      for line_number, row in builder.read_json_lines(path, dataset="nlvr2",
                                                      source=SOURCE):
        label = str(row["label"]).lower()
        if label not in LABELS:
          raise ValueError(f"{path}:{line_number}: label {row['label']!r} is not True/False.")
        # Train images are spread over numbered folders named by `directory`.
        subfolder = f"{folder}/{row['directory']}" if "directory" in row else folder
        keys = []
        for image_name in image_names(row["identifier"]):
          key = image_name.removesuffix(".png")
          if key not in files:
            files[key] = builder.find_file(
                root, [f"{r}{subfolder}/{image_name}" for r in _IMAGE_ROOTS],
                dataset="nlvr2", source=SOURCE)
          keys.append(key)
        rows.append((row, label, keys))
      generators[split] = self._generate_examples(rows)
    self.write_image_tables(
        tables, {split: folder for split, (_, folder) in _SPLIT_FILES.items()})
    return generators

  def _generate_examples(self, rows: list[tuple[dict, str, list[str]]]):
    for row, label, (key0, key1) in rows:
      yield row["identifier"], {
          "identifier": row["identifier"],
          "sentence": row["sentence"],
          "label": label,
          "image0": b"",  # joined from the image tables when read
          "image1": b"",
          "image0_id": key0,
          "image1_id": key1,
      }
