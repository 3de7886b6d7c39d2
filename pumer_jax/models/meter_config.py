"""`MeterConfig`: METER's architecture, task head and reducer, validated.

Field names follow the Hugging Face configs the encoders come from (CLIP's
vision tower, RoBERTa) and METER's own fusion settings; `from_hf`/official
conversion fill them from a checkpoint (`pumer_jax.convert`).
"""

from __future__ import annotations

import dataclasses

from pumer_jax.models.heads import TASK_HEADS
from pumer_jax.models.layers import DTYPES, PrunedSizes, pruned_size
from pumer_jax.models.positions import check_image_init
from pumer_jax.reduce import Geometry, ReduceConfig


FUSION_ORDERS = ("parallel", "text_first")


@dataclasses.dataclass(frozen=True)
class MeterConfig:
  """METER's architecture, head and reducer; defaults are METER-CLIP16-RoBERTa.

  `vision_*` follow Hugging Face `CLIPVisionConfig`, `text_*` and
  `vocab_size`/`max_position_embeddings`/`type_vocab_size`/`pad_token_id`
  `RobertaConfig`; the rest sizes the fusion blocks (`num_fusion_layers`
  co-attention blocks of width `hidden_size`). `image_size` sizes the
  position table; other inputs that are multiples of `patch_size` get the
  table resized bicubically. `input_size`, when set, pins the (H, W) a
  compiled model expects. `fusion_order`: "parallel" (METER's: both sides
  of a co-attention block read the block's input) or "text_first" (PuMer's
  METER: the image side reads the text side's output, after its FFN and
  any merge; PuMer's METER results were fine-tuned so).
  """

  # Image encoder (CLIP vision tower).
  vision_hidden_size: int = 768
  vision_num_layers: int = 11  # METER drops CLIP ViT-B/16's last block
  vision_num_heads: int = 12
  vision_intermediate_size: int = 3072
  vision_act: str = "quick_gelu"
  vision_layer_norm_eps: float = 1e-5
  image_size: int = 224
  patch_size: int = 16
  num_channels: int = 3
  # How the vision tower's position table and patch embedding start (both
  # learned; only the init differs): "normal" N(0, 0.02) as CLIP, or
  # "sincos2d" (a 2-D sine-cosine code times `image_position_scale`, see
  # `models/positions.py`). The embedded task's models use sincos2d.
  image_position_init: str = "normal"
  image_position_scale: float = 1.0
  patch_init_std: float = 0.02
  # Text encoder (RoBERTa).
  vocab_size: int = 50265
  text_hidden_size: int = 768
  text_num_layers: int = 12
  text_num_heads: int = 12
  text_intermediate_size: int = 3072
  text_act: str = "gelu"
  text_layer_norm_eps: float = 1e-5
  max_position_embeddings: int = 514
  type_vocab_size: int = 1
  pad_token_id: int = 1
  # Co-attention fusion.
  hidden_size: int = 768
  num_fusion_layers: int = 6
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  layer_norm_eps: float = 1e-12
  hidden_dropout_prob: float = 0.0
  attention_probs_dropout_prob: float = 0.0
  fusion_order: str = "parallel"
  # Task.
  head: str = "vqa"
  num_labels: int = 3129
  num_images: int = 1
  input_size: tuple[int, int] | None = None
  dtype: str = "float32"
  reduce: ReduceConfig = ReduceConfig()
  # A model sliced by EfficientVLM (`compress/finalize.py`): per module and
  # kind, the heads or FFN units each layer kept. () = unpruned.
  pruned_sizes: PrunedSizes = ()

  def __post_init__(self):
    if self.head not in TASK_HEADS:
      raise ValueError(f"head={self.head!r} must be one of {TASK_HEADS}.")
    for width, heads, name in (
        (self.vision_hidden_size, self.vision_num_heads, "vision_"),
        (self.text_hidden_size, self.text_num_heads, "text_"),
        (self.hidden_size, self.num_attention_heads, ""),
    ):
      if heads < 1 or width % heads:
        raise ValueError(
            f"{name}hidden_size={width} is not divisible by the head count "
            f"{heads}.")
    if self.head == "nlvr2" and self.num_images < 2:
      raise ValueError("head='nlvr2' needs num_images >= 2.")
    check_image_init(self.image_position_init, self.image_position_scale,
                     self.patch_init_std, self.vision_hidden_size)
    if self.max_text_len < 1:
      raise ValueError(
          f"max_position_embeddings={self.max_position_embeddings} leaves no "
          f"text positions after pad_token_id={self.pad_token_id}.")
    if self.fusion_order not in FUSION_ORDERS:
      raise ValueError(
          f"fusion_order={self.fusion_order!r} must be one of "
          f"{FUSION_ORDERS}: 'parallel' as METER, 'text_first' as PuMer's "
          "METER.")
    if self.dtype not in DTYPES:
      raise ValueError(f"dtype={self.dtype!r} must be one of {list(DTYPES)}.")

  @property
  def max_text_len(self) -> int:
    """RoBERTa's positions start after the padding index."""
    return self.max_position_embeddings - self.pad_token_id - 1

  def schedule(self, image_len: int, text_len: int, train: bool = False):
    """The reducer's static token counts over the fusion blocks
    (`image_len`: the image stream entering them, [CLS] included)."""
    return self.reduce.schedule(Geometry(
        "meter", self.num_fusion_layers, image_len, text_len,
        self.patch_size), train)

  @property
  def pooled_size(self) -> int:
    """Width of one image-text pair's pooled features (text; image)."""
    return 2 * self.hidden_size

  def replace(self, **changes) -> "MeterConfig":
    return dataclasses.replace(self, **changes)

  def layer_size(self, module: str, kind: str, layer: int, default: int
                 ) -> int:
    """Heads or FFN units of one layer, after any EfficientVLM slicing."""
    return pruned_size(self.pruned_sizes, module, kind, layer, default)
