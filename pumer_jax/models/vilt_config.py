"""`ViltConfig`: ViLT's architecture, task head and reducer, validated.

Field names follow Hugging Face's `ViltConfig`, so a checkpoint's
config.json fills it directly (`ViltConfig.from_hf`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pumer_jax.models.heads import TASK_HEADS
from pumer_jax.models.layers import DTYPES, PrunedSizes, pruned_size
from pumer_jax.models.patch_stem import check_patch_stem
from pumer_jax.models.positions import check_image_init
from pumer_jax.reduce import Geometry, ReduceConfig

# Architectures of Hugging Face checkpoints, and the head each one carries.
HF_ARCHITECTURE_HEADS = {
    "ViltForQuestionAnswering": "vqa",
    "ViltForImagesAndTextClassification": "nlvr2",
    "ViltForImageAndTextRetrieval": "retrieval",
    "ViltForMaskedLM": "none",
    "ViltModel": "none",
}


@dataclasses.dataclass(frozen=True)
class ViltConfig:
  """ViLT's architecture (Hugging Face `ViltConfig` names), head and reducer.

  `image_size` sizes the position table (the pretraining resolution); inputs
  of any size that is a multiple of `patch_size` work, their position
  embeddings interpolated. `input_size`, when set, pins the (H, W) a
  compiled model expects, so a wrong image is an error, not a recompile.
  """

  vocab_size: int = 30522
  type_vocab_size: int = 2
  modality_type_vocab_size: int = 2
  max_position_embeddings: int = 40
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.0
  attention_probs_dropout_prob: float = 0.0
  layer_norm_eps: float = 1e-12
  image_size: int = 384
  patch_size: int = 32
  num_channels: int = 3
  qkv_bias: bool = True
  head: str = "vqa"
  num_labels: int = 3129
  num_images: int = 1
  input_size: tuple[int, int] | None = None
  dtype: str = "float32"
  reduce: ReduceConfig = ReduceConfig()
  # A model sliced by EfficientVLM (`compress/finalize.py`): per module and
  # kind, the heads or FFN units each layer kept. () = unpruned.
  pruned_sizes: PrunedSizes = ()
  # How the image position table starts (it is learned either way):
  # "normal" (N(0, 0.02), as Hugging Face's ViLT) or "sincos2d" (the patch
  # rows a 2-D sine-cosine code of (row, column), half the channels each,
  # times `image_position_scale`; the CLS row zero). Only init differs.
  image_position_init: str = "normal"
  image_position_scale: float = 1.0
  # The std of the patch embedding's normal init (0.02: Hugging Face's).
  patch_init_std: float = 0.02
  # How pixels become patch tokens (`models/patch_stem.py`): "linear" (ViLT's
  # one stride-patch conv, the only one weight import gives) or "conv" (a
  # stride-2 conv stem, for models trained from scratch on small data).
  patch_stem: str = "linear"
  # A pretraining head (0 = none): per image patch, logits over
  # `patch_classes` read off the output of layer `patch_head_layer` (1 = the
  # first layer's), trained by `loss.patch_weight` (shapes_vqa's per-patch
  # objects, `data/shapes_patches.py`); inference never calls it.
  patch_classes: int = 0
  patch_head_layer: int = 0
  # A grounding head (0 = none): per image patch, one logit, "the question
  # names the object here", read off the output of layer `grounding_layer`
  # and trained by `loss.grounding_weight` (shapes_vqa's referents).
  grounding_layer: int = 0

  def __post_init__(self):
    if self.head not in TASK_HEADS:
      raise ValueError(f"head={self.head!r} must be one of {TASK_HEADS}.")
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(
          f"hidden_size={self.hidden_size} is not divisible by "
          f"num_attention_heads={self.num_attention_heads}."
      )
    if self.head == "nlvr2" and self.num_images < 2:
      raise ValueError("head='nlvr2' needs num_images >= 2.")
    if self.num_images + 1 > self.modality_type_vocab_size:
      raise ValueError(
          f"num_images={self.num_images} needs modality_type_vocab_size >= "
          f"{self.num_images + 1} (one type for text, one per image)."
      )
    if self.patch_classes < 0:
      raise ValueError(f"patch_classes={self.patch_classes} must be >= 0.")
    if self.patch_classes and not (
        1 <= self.patch_head_layer <= self.num_hidden_layers):
      raise ValueError(
          f"patch_head_layer={self.patch_head_layer} must name a layer in "
          f"[1, num_hidden_layers={self.num_hidden_layers}].")
    if self.patch_classes and self.num_images > 1:
      raise ValueError("the patch head reads one image; num_images="
                       f"{self.num_images} (NLVR2) has two.")
    if not 0 <= self.grounding_layer <= self.num_hidden_layers:
      raise ValueError(
          f"grounding_layer={self.grounding_layer} must be 0 (none) or name a "
          f"layer in [1, num_hidden_layers={self.num_hidden_layers}].")
    if self.grounding_layer and self.num_images > 1:
      raise ValueError("the grounding head reads one image; num_images="
                       f"{self.num_images} (NLVR2) has two.")
    check_image_init(self.image_position_init, self.image_position_scale,
                     self.patch_init_std, self.hidden_size)
    check_patch_stem(self.patch_stem, self.patch_size)
    if self.dtype not in DTYPES:
      raise ValueError(f"dtype={self.dtype!r} must be one of {list(DTYPES)}.")

  @property
  def max_text_len(self) -> int:
    return self.max_position_embeddings

  def schedule(self, image_len: int, text_len: int, train: bool = False):
    """The reducer's static token counts on inputs of these lengths
    (`image_len` at the model's input, [CLS] included)."""
    return self.reduce.schedule(Geometry(
        "vilt", self.num_hidden_layers, image_len, text_len, self.patch_size),
        train)

  def replace(self, **changes) -> "ViltConfig":
    return dataclasses.replace(self, **changes)

  def layer_size(self, module: str, kind: str, layer: int, default: int
                 ) -> int:
    """Heads or FFN units of one layer, after any EfficientVLM slicing."""
    return pruned_size(self.pruned_sizes, module, kind, layer, default)

  @classmethod
  def from_hf(cls, hf: dict[str, Any], **overrides) -> "ViltConfig":
    """From a Hugging Face `config.json` dict; the head from its architecture."""
    archs = hf.get("architectures") or ["ViltModel"]
    if archs[0] not in HF_ARCHITECTURE_HEADS:
      raise ValueError(
          f"config.json architecture {archs[0]!r} is not a ViLT model this "
          f"project knows; expected one of {sorted(HF_ARCHITECTURE_HEADS)}."
      )
    head = HF_ARCHITECTURE_HEADS[archs[0]]
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in hf.items() if k in names}
    values["head"] = head
    num_labels = len(hf.get("id2label") or {}) or hf.get("num_labels", 2)
    values["num_labels"] = 1 if head == "retrieval" else num_labels
    num_images = hf.get("num_images", -1)
    values["num_images"] = num_images if head == "nlvr2" else 1
    if isinstance(values.get("image_size"), (list, tuple)):
      raise ValueError("Only square position tables (int image_size) exist.")
    values.update(overrides)
    return cls(**values)
