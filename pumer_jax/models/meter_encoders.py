"""METER's two encoders: CLIP's vision tower and RoBERTa.

Both run at full length (reducers act only in the fusion blocks) and return
`(tokens, hidden_states, attentions)`. Parameter names map onto Hugging Face
`CLIPVisionModel` and `RobertaModel` by a table (`pumer_jax.convert`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from pumer_jax.models.layers import (
    DTYPES,
    INIT_STD,
    Mlp,
    MultiHeadAttention,
    constrain_batch,
    embed,
    gate_row,
    layer_norm,
)
from pumer_jax.models.meter_config import MeterConfig
from pumer_jax.models.positions import sincos2d_init
from pumer_jax.models.resize import bicubic_resize


class ClipLayer(nn.Module):
  """CLIP's pre-LN residual block: x + Attn(LN(x)), then x + MLP(LN(x))."""

  config: MeterConfig
  layer: int = 0  # its index: a sliced model's layers differ in size

  @nn.compact
  def __call__(self, x, size, *, head_gate=None, unit_gate=None,
               deterministic=True, need_probs=True):
    c = self.config
    dtype = DTYPES[c.dtype]
    h, aux = MultiHeadAttention(
        c.layer_size("vision", "heads", self.layer, c.vision_num_heads),
        c.vision_hidden_size, prop_attn=False, dtype=dtype,
        head_dim=c.vision_hidden_size // c.vision_num_heads, name="self_attn",
    )(layer_norm(c.vision_layer_norm_eps, "layer_norm1", dtype)(x), size,
      head_gate=head_gate, deterministic=deterministic, need_probs=need_probs)
    x = x + h
    h = Mlp(c.layer_size("vision", "units", self.layer,
                         c.vision_intermediate_size),
            c.vision_hidden_size, c.vision_act, dtype, name="mlp")(
                layer_norm(c.vision_layer_norm_eps, "layer_norm2", dtype)(x),
                unit_gate)
    return x + h, aux


class ClipVisionEncoder(nn.Module):
  """CLIP's vision tower; every token leaves through the final LayerNorm.

  Returns `(tokens [B, 1 + h*w, Dv], hidden_states, attentions)`, where
  `hidden_states` are the encoder's inputs after the pre-LN, layer by layer,
  and the last one before the post-LN (Hugging Face's `last_hidden_state`).
  """

  config: MeterConfig

  @nn.compact
  def __call__(self, pixel_values, *, gates=None, deterministic=True,
               need_probs=True):
    c = self.config
    dtype = DTYPES[c.dtype]
    d = c.vision_hidden_size
    patches = nn.Conv(
        d, (c.patch_size, c.patch_size), strides=(c.patch_size,) * 2,
        padding="VALID", use_bias=False, dtype=dtype,
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.normal(c.patch_init_std),
            (None, None, None, "embed")),
        name="patch_embedding",
    )(pixel_values.astype(dtype))  # [B, h, w, Dv]
    batch, h, w, _ = patches.shape
    grid = c.image_size // c.patch_size
    table_init = (sincos2d_init(grid, c.image_position_scale)
                  if c.image_position_init == "sincos2d"
                  else nn.initializers.normal(INIT_STD))
    table = self.param(
        "position_embedding",
        nn.with_logical_partitioning(table_init, (None, "embed")),
        (grid * grid + 1, d),
    )
    cls_token = self.param(
        "class_embedding",
        nn.with_logical_partitioning(nn.initializers.normal(INIT_STD),
                                     ("embed",)),
        (d,),
    )
    spatial = table[1:]
    if (h, w) != (grid, grid):
      spatial = bicubic_resize(spatial.reshape(grid, grid, d), (h, w))
    spatial = spatial.reshape(1, h * w, d)
    x = patches.reshape(batch, h * w, d) + spatial.astype(dtype)
    cls = jnp.broadcast_to((cls_token + table[0]).astype(dtype), (batch, 1, d))
    x = jnp.concatenate([cls, x], axis=1)  # [B, 1 + h*w, Dv]
    x = layer_norm(c.vision_layer_norm_eps, "pre_layernorm", dtype)(x)
    x = constrain_batch(x)
    size = jnp.ones(x.shape[:2], jnp.float32)
    hidden_states, attentions = [], []
    for i in range(c.vision_num_layers):
      hidden_states.append(x)
      x, aux = ClipLayer(c, i, name=f"layer_{i}")(
          x, size, head_gate=gate_row(gates, "vision", "heads", i),
          unit_gate=gate_row(gates, "vision", "units", i),
          deterministic=deterministic, need_probs=need_probs)
      attentions.append(aux["probs"])
    hidden_states.append(x)
    x = layer_norm(c.vision_layer_norm_eps, "post_layernorm", dtype)(x)
    return x, hidden_states, attentions


class BertLayer(nn.Module):
  """A post-LN BERT/RoBERTa layer: LN(x + Attn(x)), then LN(x + FFN(x))."""

  num_heads: int
  hidden_size: int
  intermediate_size: int
  act: str
  eps: float
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  head_dim: int | None = None

  @nn.compact
  def __call__(self, x, size, *, head_gate=None, unit_gate=None,
               deterministic=True, need_probs=True):
    drop = nn.Dropout(self.dropout_rate)
    h, aux = MultiHeadAttention(
        self.num_heads, self.hidden_size,
        dropout_rate=self.attention_dropout_rate, prop_attn=False,
        dtype=self.dtype, head_dim=self.head_dim, name="attention",
    )(x, size, head_gate=head_gate, deterministic=deterministic,
      need_probs=need_probs)
    x = layer_norm(self.eps, "attention_norm", self.dtype)(
        x + drop(h, deterministic))
    h = Mlp(self.intermediate_size, self.hidden_size, self.act, self.dtype,
            name="mlp")(x, unit_gate)
    x = layer_norm(self.eps, "output_norm", self.dtype)(
        x + drop(h, deterministic))
    return x, aux


class RobertaEncoder(nn.Module):
  """RoBERTa: word + position + token-type embeddings, post-LN layers.

  Positions count the real tokens from `pad_token_id + 1`, padding sits at
  `pad_token_id`; Hugging Face derives the same from `input_ids != pad`,
  we from the attention mask, so any tokenizer's padding id works.
  Returns `(tokens [B, Lt, Dt], hidden_states, attentions)`.
  """

  config: MeterConfig

  @nn.compact
  def __call__(self, input_ids, attention_mask, token_type_ids, *,
               gates=None, deterministic=True, need_probs=True):
    c = self.config
    dtype = DTYPES[c.dtype]
    d = c.text_hidden_size
    mask = attention_mask.astype(jnp.int32)
    positions = jnp.cumsum(mask, axis=1) * mask + c.pad_token_id
    x = (
        embed(c.vocab_size, d, "word_embeddings", dtype)(input_ids)
        + embed(c.max_position_embeddings, d, "position_embeddings",
                dtype)(positions)
        + embed(c.type_vocab_size, d, "token_type_embeddings",
                dtype)(token_type_ids)
    )
    x = layer_norm(c.text_layer_norm_eps, "LayerNorm", dtype)(x)
    x = nn.Dropout(c.hidden_dropout_prob)(x, deterministic)
    x = constrain_batch(x)
    size = jnp.asarray(attention_mask, jnp.float32)
    hidden_states, attentions = [], []
    for i in range(c.text_num_layers):
      hidden_states.append(x)
      x, aux = BertLayer(
          c.layer_size("text", "heads", i, c.text_num_heads), d,
          c.layer_size("text", "units", i, c.text_intermediate_size),
          c.text_act, c.text_layer_norm_eps, c.hidden_dropout_prob,
          c.attention_probs_dropout_prob, dtype,
          head_dim=d // c.text_num_heads, name=f"layer_{i}",
      )(x, size, head_gate=gate_row(gates, "text", "heads", i),
        unit_gate=gate_row(gates, "text", "units", i),
        deterministic=deterministic, need_probs=need_probs)
      attentions.append(aux["probs"])
    hidden_states.append(x)
    return x, hidden_states, attentions
