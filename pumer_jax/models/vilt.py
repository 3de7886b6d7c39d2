"""ViLT: a single-stream vision-language transformer, with token reducers.

Text tokens and image patches share one sequence `[text; image]` through 12
pre-LN blocks. Reducers act inside the blocks listed in `reduce.layers`,
after the attention residual and before the MLP (DESIGN 4.3). Parameter
names map one-to-one onto Hugging Face `ViltModel` (see `convert.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pumer_jax.models.dynamicvit import (
    KeepPredictor,
    drop_by_predictor,
    sample_keep_policy,
)
from pumer_jax.models.heads import TASK_HEADS, ClassifierHead, RankHead
from pumer_jax.models.inputs import (
    backbone_passes,
    unfold_pooled,
    zero_inputs,
)
from pumer_jax.models.layers import (
    INIT_STD,
    Mlp,
    MultiHeadAttention,
    align_corners_resize,
    constrain_batch,
    embed,
    PrunedSizes,
    gate_row,
    layer_norm,
    pruned_size,
)
from pumer_jax.models.reducers import (
    ReduceConfig,
    pumer_single_stream,
    tome_merge,
)
from pumer_jax.reduce import init_source

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
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
    if self.dtype not in DTYPES:
      raise ValueError(f"dtype={self.dtype!r} must be one of {list(DTYPES)}.")

  @property
  def max_text_len(self) -> int:
    return self.max_position_embeddings

  def schedule(self, image_len: int, text_len: int):
    """The reducer's static token counts on inputs of these lengths."""
    return self.reduce.schedule(self.num_hidden_layers, image_len, text_len)

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


class TextEmbeddings(nn.Module):
  """BERT embeddings: word + position + token type, LayerNorm, dropout."""

  config: ViltConfig

  @nn.compact
  def __call__(self, input_ids, token_type_ids, deterministic: bool):
    c = self.config
    dtype = DTYPES[c.dtype]
    positions = jnp.arange(input_ids.shape[1])[None]
    x = (
        embed(c.vocab_size, c.hidden_size, "word_embeddings", dtype)(input_ids)
        + embed(c.type_vocab_size, c.hidden_size, "token_type_embeddings",
                dtype)(token_type_ids)
        + embed(c.max_position_embeddings, c.hidden_size,
                "position_embeddings", dtype)(positions)
    )
    x = layer_norm(c.layer_norm_eps, "LayerNorm", dtype)(x)
    return nn.Dropout(c.hidden_dropout_prob)(x, deterministic)


class ViltEmbeddings(nn.Module):
  """Text embeddings, and patch embeddings with interpolated positions."""

  config: ViltConfig

  @nn.compact
  def __call__(self, input_ids, token_type_ids, pixel_values,
               image_type, deterministic: bool):
    """Returns text [B, Lt, D] and image [B, 1 + h*w, D] embeddings."""
    c = self.config
    dtype = DTYPES[c.dtype]
    d = c.hidden_size
    text = TextEmbeddings(c, name="text_embeddings")(
        input_ids, token_type_ids, deterministic)

    patches = nn.Conv(
        d, (c.patch_size, c.patch_size), strides=(c.patch_size,) * 2,
        padding="VALID", dtype=dtype,
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.normal(INIT_STD), (None, None, None, "embed")),
        name="patch_embeddings",
    )(pixel_values.astype(dtype))  # [B, h, w, D]
    batch, h, w, _ = patches.shape
    grid = c.image_size // c.patch_size
    table = self.param(
        "position_embeddings",
        nn.with_logical_partitioning(nn.initializers.normal(INIT_STD),
                                     (None, None, "embed")),
        (1, grid * grid + 1, d),
    )
    cls_token = self.param(
        "cls_token",
        nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                     (None, None, "embed")),
        (1, 1, d),
    )
    spatial = align_corners_resize(table[0, 1:].reshape(grid, grid, d), (h, w))
    image = patches.reshape(batch, h * w, d) + spatial.reshape(1, h * w, d)
    cls = jnp.broadcast_to(cls_token + table[:, :1], (batch, 1, d))
    image = jnp.concatenate([cls.astype(image.dtype), image], axis=1)
    image = nn.Dropout(c.hidden_dropout_prob)(image, deterministic)

    modality = embed(c.modality_type_vocab_size, d, "token_type_embeddings",
                     dtype)
    text = text + modality(jnp.zeros((1, 1), jnp.int32))
    image = image + modality(image_type[:, None])  # [B, 1 + h*w, D]
    return text, image


class ViltLayer(nn.Module):
  """A pre-LN block split in two, so a reducer can act between its halves."""

  config: ViltConfig
  layer: int = 0  # its index: a sliced model's layers differ in size

  def setup(self):
    c = self.config
    dtype = DTYPES[c.dtype]
    self.layernorm_before = layer_norm(c.layer_norm_eps, "layernorm_before",
                                       dtype)
    self.attention = MultiHeadAttention(
        num_heads=c.layer_size("vilt", "heads", self.layer,
                               c.num_attention_heads),
        hidden_size=c.hidden_size, qkv_bias=c.qkv_bias,
        dropout_rate=c.attention_probs_dropout_prob,
        prop_attn=c.reduce.prop_attn, dtype=dtype,
        head_dim=c.hidden_size // c.num_attention_heads,
    )
    self.layernorm_after = layer_norm(c.layer_norm_eps, "layernorm_after",
                                      dtype)
    self.mlp = Mlp(
        c.layer_size("vilt", "units", self.layer, c.intermediate_size),
        c.hidden_size, c.hidden_act, dtype)
    self.dropout = nn.Dropout(c.hidden_dropout_prob)

  def attend(self, x, size, *, key_policy=None, head_gate=None,
             deterministic=True):
    """x + Attention(LN(x)); returns it and the attention's keys/probs."""
    h, aux = self.attention(self.layernorm_before(x), size,
                            key_policy=key_policy, head_gate=head_gate,
                            deterministic=deterministic)
    return x + self.dropout(h, deterministic), aux

  def feed_forward(self, x, *, unit_gate=None, deterministic=True):
    h = self.mlp(self.layernorm_after(x), unit_gate)
    return x + self.dropout(h, deterministic)

  def __call__(self, x, size, *, deterministic=True):
    x, aux = self.attend(x, size, deterministic=deterministic)
    return self.feed_forward(x, deterministic=deterministic), aux


class ViltModel(nn.Module):
  """Embeddings, encoder with reducers, final LayerNorm and pooler."""

  config: ViltConfig

  def setup(self):
    c = self.config
    self.embeddings = ViltEmbeddings(c)
    self.layers = [ViltLayer(c, i, name=f"layer_{i}")
                   for i in range(c.num_hidden_layers)]
    if c.reduce.method == "dynamicvit":
      self.keep_predictors = [
          KeepPredictor(c.hidden_size, DTYPES[c.dtype],
                        name=f"keep_predictor_{i}")
          for i in range(len(c.reduce.layers))
      ]
    self.layernorm = layer_norm(c.layer_norm_eps, "layernorm", DTYPES[c.dtype])
    self.pooler = nn.Dense(
        c.hidden_size, dtype=DTYPES[c.dtype],
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.normal(INIT_STD), ("embed", "mlp")),
        name="pooler",
    )

  def __call__(
      self,
      input_ids: jax.Array,
      attention_mask: jax.Array,
      token_type_ids: jax.Array,
      pixel_values: jax.Array,
      image_type: jax.Array,
      *,
      train: bool = False,
      output_hidden_states: bool = False,
      output_attentions: bool = False,
      track_source: bool = False,
      gates: dict | None = None,
  ) -> dict[str, Any]:
    c = self.config
    rc = c.reduce
    deterministic = not train
    text, image = self.embeddings(input_ids, token_type_ids, pixel_values,
                                  image_type, deterministic)
    batch, lt, li = text.shape[0], text.shape[1], image.shape[1]
    schedule = c.schedule(li, lt)
    x = constrain_batch(jnp.concatenate([text, image], axis=1))  # [B, N, D]
    size = jnp.concatenate(
        [attention_mask.astype(jnp.float32), jnp.ones((batch, li))], axis=1)
    source = init_source(batch, lt + li) if track_source else None
    policy = None  # DynamicViT's training-time keep mask over all tokens
    keep_fractions = []
    tokens, image_tokens, text_tokens = [lt + li], [li], [lt]
    hidden_states, attentions = [], []

    for i, layer in enumerate(self.layers):
      hidden_states.append(x)
      x, aux = layer.attend(x, size, key_policy=policy,
                            head_gate=gate_row(gates, "vilt", "heads", i),
                            deterministic=deterministic)
      attentions.append(aux["probs"])
      counts = schedule.at(i)
      if counts is not None and rc.method == "pumer":
        x, size, source = pumer_single_stream(
            x, size, aux["keys"], aux["probs"], counts,
            protect_cls=rc.protect_cls, source=source)
        lt, li = counts.text_out, counts.image_out
      elif counts is not None and rc.method == "tome":
        x, size, source = tome_merge(x, size, aux["keys"], counts,
                                     source=source)
        lt = li = -1  # ToMe mixes modalities
      elif counts is not None and rc.method == "dynamicvit":
        predictor = self.keep_predictors[schedule.layers.index(i)]
        if train:
          policy, kept = sample_keep_policy(
              predictor, self.make_rng("gumbel"), x, policy, lt,
              rc.gumbel_temperature)
          keep_fractions.append(kept)
        else:
          x, size, source = drop_by_predictor(predictor, x, size, source, lt,
                                              counts.keep)
          li = counts.keep
      x = layer.feed_forward(x, unit_gate=gate_row(gates, "vilt", "units", i),
                             deterministic=deterministic)
      # DynamicViT masks instead of dropping while training: shapes stay.
      masking = train and rc.method == "dynamicvit"
      expected = tokens[0] if masking else schedule.tokens_in(i + 1)
      if x.shape[1] != expected:
        raise AssertionError(
            f"layer {i} produced {x.shape[1]} tokens; the schedule says "
            f"{expected}.")
      tokens.append(x.shape[1])
      image_tokens.append(li)
      text_tokens.append(lt)

    hidden_states.append(x)  # as Hugging Face: the last one before the LN
    x = self.layernorm(x)
    pooled = jnp.tanh(self.pooler(x[:, 0]))
    out = {
        "pooled": pooled,
        "tokens": jnp.asarray(tokens, jnp.int32),
        "image_tokens": jnp.asarray(image_tokens, jnp.int32),
        "text_tokens": jnp.asarray(text_tokens, jnp.int32),
    }
    if output_hidden_states:
      out["hidden_states"] = tuple(hidden_states)
    if output_attentions:
      out["attentions"] = tuple(attentions)
    if keep_fractions:
      out["keep_fractions"] = tuple(keep_fractions)
    if track_source:
      out["source"] = source
      out["size"] = size
    return out


class Vilt(nn.Module):
  """ViLT with a task head: the model users apply.

  `apply(variables, input_ids=, attention_mask=, token_type_ids=,
  pixel_values=NHWC, train=False)` returns a dict with `logits` (absent for
  head 'none'), `pooled`, `tokens` (tokens entering each layer, then the
  output count), `image_tokens`/`text_tokens` (-1 where ToMe mixed them),
  and on request `hidden_states`, `attentions`, `source`. NLVR2 takes
  `pixel_values` of shape [B, num_images, H, W, C]. `gates` (EfficientVLM,
  `compress/gates.py`) scale each head's context and each FFN unit.
  """

  config: ViltConfig

  def setup(self):
    c = self.config
    dtype = DTYPES[c.dtype]
    self.vilt = ViltModel(c)
    if c.head in ("vqa", "ve"):
      self.classifier = ClassifierHead(2 * c.hidden_size, c.num_labels, dtype)
    elif c.head == "nlvr2":
      width = c.num_images * c.hidden_size
      self.classifier = ClassifierHead(width, c.num_labels, dtype)
    elif c.head == "retrieval":
      self.rank = RankHead(dtype)

  def __call__(
      self,
      input_ids: jax.Array,
      pixel_values: jax.Array,
      attention_mask: jax.Array | None = None,
      token_type_ids: jax.Array | None = None,
      *,
      train: bool = False,
      output_hidden_states: bool = False,
      output_attentions: bool = False,
      track_source: bool = False,
      gates: dict | None = None,
  ) -> dict[str, Any]:
    c = self.config
    num_images, inputs = backbone_passes(c, input_ids, pixel_values,
                                         attention_mask, token_type_ids)
    out = self.vilt(**inputs, train=train,
                    output_hidden_states=output_hidden_states,
                    output_attentions=output_attentions,
                    track_source=track_source, gates=gates)
    # [B, images * D]: NLVR2's passes side by side.
    out["pooled"] = pooled = unfold_pooled(num_images, out["pooled"])
    if c.head in ("vqa", "ve", "nlvr2"):
      out["logits"] = self.classifier(pooled).astype(jnp.float32)
    elif c.head == "retrieval":
      out["logits"] = self.rank(pooled).astype(jnp.float32)  # [B, 1]
    return out


def example_inputs(config: ViltConfig, batch: int = 1,
                   text_len: int | None = None) -> dict[str, np.ndarray]:
  """Zero inputs with the static shapes a model is compiled for.

  The image is `input_size` (else the position table's `image_size`), the
  text `text_len` long (else the whole position table).
  """
  return zero_inputs(config, batch, text_len or config.max_position_embeddings)
