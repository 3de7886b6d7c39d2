"""METER: CLIP-ViT and RoBERTa encoders, co-attention fusion, token reducers.

Two streams: the image encoder (CLIP's vision tower, pre-LN, quick-GELU) and
the text encoder (RoBERTa, post-LN) run apart, are projected to the fusion
width, and meet in `num_fusion_layers` co-attention blocks. Each block holds
a text-side and an image-side BERT cross layer (self-attention,
cross-attention to the other stream, FFN, post-LN); both read the block's
input streams, as METER's reference code, or the image side reads the text
side's output, as PuMer's (`MeterConfig.fusion_order`).

A reducer (`config.reduce`) acts in its fusion blocks (DESIGN 4.3): inside
the text-side layer, after its self- and cross-attention (PuMer prunes the
image by the text->image cross-attention and merges it on that attention's
keys, the text on its self-attention keys; ToMe merges the image), so the
image-side layer runs on the reduced image; inside the image-side layer
after its self-attention, for a method that reads the image [CLS] row
(EViT); or before the block (DynamicViT, as its reference). Parameter names of the encoders map onto Hugging Face
`CLIPVisionModel` and `RobertaModel` by a table (`pumer_jax.convert`).
The config is `meter_config.py`, the encoders `meter_encoders.py`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pumer_jax.models.heads import ClassifierHead, RankHead
from pumer_jax.models.inputs import backbone_passes, unfold_pooled, zero_inputs
from pumer_jax.models.layers import (
    DTYPES,
    Mlp,
    MultiHeadAttention,
    dense,
    embed,
    gate_row,
    layer_norm,
)
from pumer_jax.models.meter_config import MeterConfig
from pumer_jax.models.meter_encoders import ClipVisionEncoder, RobertaEncoder
from pumer_jax.models.reducer_step import (
    Reducer,
    check_length,
    image_side_view,
    reducer_params,
    text_side_view,
)
from pumer_jax.reduce import Tokens, Where, init_source

__all__ = ["Meter", "MeterConfig", "MeterModel", "example_inputs"]


class CrossLayer(nn.Module):
  """METER's BertCrossLayer, split so a reducer can act between its parts.

  `self_attend`: LN(x + SelfAttn(x)); `cross_attend`: LN(x + CrossAttn(x,
  context)); `feed_forward`: LN(x + FFN(x)). Post-LN throughout.
  """

  config: MeterConfig
  module: str = "fusion_text"  # or "fusion_image": its gate/pruning module
  layer: int = 0

  def setup(self):
    c = self.config
    dtype = DTYPES[c.dtype]
    rule = c.reduce.attention_rule()
    attention = lambda name, kind: MultiHeadAttention(
        c.layer_size(self.module, kind, self.layer, c.num_attention_heads),
        c.hidden_size, dropout_rate=c.attention_probs_dropout_prob,
        prop_attn=rule.proportional, dtype=dtype,
        head_dim=c.hidden_size // c.num_attention_heads,
        official_softmax=rule.official_softmax, name=name)
    self.attention = attention("attention", "heads")
    self.attention_norm = layer_norm(c.layer_norm_eps, "attention_norm", dtype)
    self.crossattention = attention("crossattention", "cross_heads")
    self.crossattention_norm = layer_norm(c.layer_norm_eps,
                                          "crossattention_norm", dtype)
    self.mlp = Mlp(
        c.layer_size(self.module, "units", self.layer, c.intermediate_size),
        c.hidden_size, c.hidden_act, dtype)
    self.output_norm = layer_norm(c.layer_norm_eps, "output_norm", dtype)
    self.dropout = nn.Dropout(c.hidden_dropout_prob)

  def self_attend(self, x, size, *, key_policy=None, head_gate=None,
                  deterministic=True, need_probs=True):
    """LN(x + SelfAttn(x)), and the attention's keys/probs."""
    h, aux = self.attention(x, size, key_policy=key_policy,
                            head_gate=head_gate, deterministic=deterministic,
                            need_probs=need_probs)
    return self.attention_norm(x + self.dropout(h, deterministic)), aux

  def cross_attend(self, x, context, context_size, *, context_policy=None,
                   head_gate=None, deterministic=True, need_probs=True):
    """LN(x + CrossAttn(x, context)), and the attention's keys/probs."""
    h, aux = self.crossattention(
        x, context_size, context, key_policy=context_policy,
        head_gate=head_gate, deterministic=deterministic,
        need_probs=need_probs)
    return self.crossattention_norm(x + self.dropout(h, deterministic)), aux

  def feed_forward(self, x, *, unit_gate=None, deterministic=True):
    h = self.mlp(x, unit_gate)
    return self.output_norm(x + self.dropout(h, deterministic))

  def __call__(self, x, size, context, context_size, *, deterministic=True):
    x, _ = self.self_attend(x, size, deterministic=deterministic)
    x, _ = self.cross_attend(x, context, context_size,
                             deterministic=deterministic)
    return self.feed_forward(x, deterministic=deterministic)


def _pooler(c: MeterConfig, name: str) -> nn.Dense:
  return dense(c.hidden_size, ("embed", "mlp"), name, dtype=DTYPES[c.dtype])


class MeterModel(nn.Module):
  """Both encoders, the projections, the co-attention blocks with reducers,
  and the two poolers (text CLS; image CLS), concatenated."""

  config: MeterConfig

  def setup(self):
    c = self.config
    dtype = DTYPES[c.dtype]
    self.vision = ClipVisionEncoder(c)
    self.text = RobertaEncoder(c)
    self.text_transform = dense(c.hidden_size, ("embed", "mlp"),
                                "text_transform", dtype=dtype)
    self.image_transform = dense(c.hidden_size, ("embed", "mlp"),
                                 "image_transform", dtype=dtype)
    # Modality embeddings: 0 text, 1.. one per image (NLVR2 has two).
    self.token_type_embeddings = embed(c.num_images + 1, c.hidden_size,
                                       "token_type_embeddings", dtype)
    self.text_layers = [CrossLayer(c, "fusion_text", i,
                                   name=f"text_layer_{i}")
                        for i in range(c.num_fusion_layers)]
    self.image_layers = [CrossLayer(c, "fusion_image", i,
                                    name=f"image_layer_{i}")
                         for i in range(c.num_fusion_layers)]
    self.reducer_params = reducer_params(c.reduce, c.hidden_size)
    self.text_pooler = _pooler(c, "text_pooler")
    self.image_pooler = _pooler(c, "image_pooler")

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
    det = not train
    probs = output_attentions  # else only the reducer's layers need them
    image, v_hidden, v_attn = self.vision(pixel_values, gates=gates,
                                          deterministic=det, need_probs=probs)
    text, t_hidden, t_attn = self.text(input_ids, attention_mask,
                                       token_type_ids, gates=gates,
                                       deterministic=det, need_probs=probs)
    text = self.text_transform(text) + self.token_type_embeddings(
        jnp.zeros((1, 1), jnp.int32))  # [B, Lt, D]
    image = self.image_transform(image) + self.token_type_embeddings(
        image_type[:, None])  # [B, Li, D]
    batch, lt, li = text.shape[0], text.shape[1], image.shape[1]
    reducer = Reducer(c.reduce, c.schedule(li, lt, train=train),
                      self.reducer_params, lambda: self.make_rng("gumbel"),
                      train)
    text = Tokens(text, jnp.asarray(attention_mask, jnp.float32))  # [B, Lt]
    image = Tokens(image, jnp.ones((batch, li), jnp.float32),
                   init_source(batch, li) if track_source else None)
    image_tokens, text_tokens = [li], [lt]
    hidden = {"fusion_text": [], "fusion_image": []}
    attn = {k: [] for k in ("fusion_text_self", "fusion_text_cross",
                            "fusion_image_self", "fusion_image_cross")}
    # A method that reads the image [CLS] row acts in the image-side layer,
    # after its self-attention; any other in the text-side layer.
    image_side = reducer.reads_image_cls

    for i, (text_layer, image_layer) in enumerate(
        zip(self.text_layers, self.image_layers)):
      hidden["fusion_text"].append(text.x)
      hidden["fusion_image"].append(image.x)
      counts = reducer.acts(i, Where.BEFORE_BLOCK)
      if counts is not None:  # as DynamicViT's reference (`pruning_loc`)
        text, image = reducer.streams(counts, text, image, None)
      block_text = text  # METER's image side reads the block's input text
      reduce_here = reducer.needs_probs(i)
      x, self_aux = text_layer.self_attend(
          text.x, text.size, key_policy=text.policy,
          head_gate=gate_row(gates, "fusion_text", "heads", i),
          deterministic=det, need_probs=probs)
      x, cross_aux = text_layer.cross_attend(
          x, image.x, image.size, context_policy=image.policy,
          head_gate=gate_row(gates, "fusion_text", "cross_heads", i),
          deterministic=det,
          need_probs=probs or (reduce_here and not image_side))
      attn["fusion_text_self"].append(self_aux["probs"])
      attn["fusion_text_cross"].append(cross_aux["probs"])
      text = text._replace(x=x)
      counts = reducer.acts(i, Where.AFTER_ATTENTION)
      if counts is not None and not image_side:
        text, image = reducer.streams(counts, text, image,
                                      text_side_view(self_aux, cross_aux))
      text = text._replace(x=text_layer.feed_forward(
          text.x, unit_gate=gate_row(gates, "fusion_text", "units", i),
          deterministic=det))
      y, i_self_aux = image_layer.self_attend(
          image.x, image.size, key_policy=image.policy,
          head_gate=gate_row(gates, "fusion_image", "heads", i),
          deterministic=det, need_probs=probs or (reduce_here and image_side))
      image = image._replace(x=y)
      if counts is not None and image_side:
        text, image = reducer.streams(counts, text, image,
                                      image_side_view(i_self_aux))
      # METER's image side reads the block's input text; PuMer's the text
      # side's output (`fusion_order`).
      context = text if c.fusion_order == "text_first" else block_text
      y, i_cross_aux = image_layer.cross_attend(
          image.x, context.x, context.size,
          head_gate=gate_row(gates, "fusion_image", "cross_heads", i),
          deterministic=det, need_probs=probs)
      attn["fusion_image_self"].append(i_self_aux["probs"])
      attn["fusion_image_cross"].append(i_cross_aux["probs"])
      image = image._replace(x=image_layer.feed_forward(
          y, unit_gate=gate_row(gates, "fusion_image", "units", i),
          deterministic=det))
      counts = reducer.schedule.at(i)
      if counts is not None:
        check_length(i, image.length, counts.image_out, "image tokens")
        check_length(i, text.length, counts.text_out, "text tokens")
      image_tokens.append(image.length)
      text_tokens.append(text.length)

    hidden["fusion_text"].append(text.x)
    hidden["fusion_image"].append(image.x)
    pooled = jnp.concatenate(
        [jnp.tanh(self.text_pooler(text.x[:, 0])),
         jnp.tanh(self.image_pooler(image.x[:, 0]))], axis=-1)  # [B, 2D]
    out = {
        "pooled": pooled,
        "tokens": jnp.asarray(image_tokens, jnp.int32)
                  + jnp.asarray(text_tokens, jnp.int32),
        "image_tokens": jnp.asarray(image_tokens, jnp.int32),
        "text_tokens": jnp.asarray(text_tokens, jnp.int32),
    }
    if output_hidden_states:
      out["hidden_states"] = {"vision": tuple(v_hidden),
                              "text": tuple(t_hidden),
                              **{k: tuple(v) for k, v in hidden.items()}}
    if output_attentions:
      out["attentions"] = {"vision": tuple(v_attn), "text": tuple(t_attn),
                           **{k: tuple(v) for k, v in attn.items()}}
    if reducer.aux:
      out["reducer_aux"] = tuple(reducer.aux)
    if track_source:
      out["source"] = image.source
      out["sources"] = tuple(reducer.sources)
      out["size"] = image.size
    return out


class Meter(nn.Module):
  """METER with a task head: the model users apply.

  Takes and returns what `Vilt` does: `apply(variables, input_ids=,
  attention_mask=, pixel_values=NHWC, train=False)` gives `logits`,
  `pooled` (text and image pooled features concatenated, per image for
  NLVR2), `tokens`/`image_tokens`/`text_tokens` entering each fusion block
  and leaving the last, and on request `hidden_states`/`attentions` (dicts
  per module: vision, text, fusion_text, fusion_image; fusion attentions
  split into self and cross) and the image stream's `source`/`size` (and
  `sources`, its map after each reduction).
  `gates` (EfficientVLM, `compress/gates.py`) scale heads and FFN units;
  `debug_checks` as `Vilt`'s.
  """

  config: MeterConfig

  def setup(self):
    c = self.config
    dtype = DTYPES[c.dtype]
    self.meter = MeterModel(c)
    if c.head in ("vqa", "ve", "nlvr2"):
      # METER's heads all narrow to 2D: VQA/SNLI-VE from 2D, NLVR2 from the
      # two pairs' 4D.
      self.classifier = ClassifierHead(c.pooled_size, c.num_labels, dtype)
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
      debug_checks: bool = False,
  ) -> dict[str, Any]:
    c = self.config
    num_images, inputs = backbone_passes(c, input_ids, pixel_values,
                                         attention_mask, token_type_ids,
                                         debug_checks=debug_checks)
    if c.type_vocab_size == 1:  # RoBERTa has one token type
      inputs["token_type_ids"] = jnp.zeros_like(inputs["token_type_ids"])
    out = self.meter(**inputs, train=train,
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


def example_inputs(config: MeterConfig, batch: int = 1,
                   text_len: int | None = None) -> dict[str, np.ndarray]:
  """Zero inputs with the static shapes a model is compiled for.

  The image is `input_size` (else the position table's `image_size`), the
  text `text_len` long (else 40, METER's fine-tuning length).
  """
  return zero_inputs(config, batch, text_len or min(40, config.max_text_len))
