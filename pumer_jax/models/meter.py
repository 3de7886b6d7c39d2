"""METER: CLIP-ViT and RoBERTa encoders, co-attention fusion, token reducers.

Two streams: the image encoder (CLIP's vision tower, pre-LN, quick-GELU) and
the text encoder (RoBERTa, post-LN) run apart, are projected to the fusion
width, and meet in `num_fusion_layers` co-attention blocks. Each block holds
a text-side and an image-side BERT cross layer (self-attention,
cross-attention to the other stream, FFN, post-LN); both read the block's
input streams, as METER's reference code, or the image side reads the text
side's output, as PuMer's (`MeterConfig.fusion_order`).

Reducers act in the fusion blocks listed in `reduce.layers` (DESIGN 4.3):
inside the text-side layer, after its self- and cross-attention, the image
tokens are pruned by the text->image cross-attention of the real text
tokens and merged on that attention's keys; the text tokens are merged on
their self-attention keys; the image-side layer then runs on the reduced
image. DynamicViT prunes the image stream before the block instead, as its
reference does. Parameter names of the encoders map onto Hugging Face
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
from pumer_jax.models.keep_predictor import KeepPredictor
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
    Tokens,
    pumer_two_stream,
    pumer_two_stream_official,
    reduce_sequence,
)
from pumer_jax.reduce import init_source

__all__ = ["Meter", "MeterConfig", "MeterModel", "example_inputs"]


class CrossLayer(nn.Module):
  """METER's BertCrossLayer, split so a reducer can act between its halves.

  `attend`: LN(x + SelfAttn(x)), then LN(x + CrossAttn(x, context));
  `feed_forward`: LN(x + FFN(x)). Post-LN throughout.
  """

  config: MeterConfig
  module: str = "fusion_text"  # or "fusion_image": its gate/pruning module
  layer: int = 0

  def setup(self):
    c = self.config
    dtype = DTYPES[c.dtype]
    attention = lambda name, kind: MultiHeadAttention(
        c.layer_size(self.module, kind, self.layer, c.num_attention_heads),
        c.hidden_size, dropout_rate=c.attention_probs_dropout_prob,
        prop_attn=c.reduce.prop_attn, dtype=dtype,
        head_dim=c.hidden_size // c.num_attention_heads,
        official_softmax=c.reduce.official, name=name)
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

  def attend(self, x, size, context, context_size, *, key_policy=None,
             context_policy=None, head_gate=None, cross_head_gate=None,
             deterministic=True, need_probs=(True, True)):
    """Returns x after both attentions, and each attention's keys/probs
    (`need_probs`: whether self- and cross-attention must return them)."""
    h, self_aux = self.attention(x, size, key_policy=key_policy,
                                 head_gate=head_gate,
                                 deterministic=deterministic,
                                 need_probs=need_probs[0])
    x = self.attention_norm(x + self.dropout(h, deterministic))
    h, cross_aux = self.crossattention(
        x, context_size, context, key_policy=context_policy,
        head_gate=cross_head_gate, deterministic=deterministic,
        need_probs=need_probs[1])
    x = self.crossattention_norm(x + self.dropout(h, deterministic))
    return x, self_aux, cross_aux

  def feed_forward(self, x, *, unit_gate=None, deterministic=True):
    h = self.mlp(x, unit_gate)
    return self.output_norm(x + self.dropout(h, deterministic))

  def __call__(self, x, size, context, context_size, *, deterministic=True):
    x, _, _ = self.attend(x, size, context, context_size,
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
    if c.reduce.method == "dynamicvit":
      self.keep_predictors = [
          KeepPredictor(c.hidden_size, dtype, name=f"keep_predictor_{i}")
          for i in range(len(c.reduce.layers))
      ]
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
    rc = c.reduce
    det = not train
    probs = output_attentions  # else only PuMer's blocks need probabilities
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
    schedule = c.schedule(li, lt)
    t_size = jnp.asarray(attention_mask, jnp.float32)  # [B, Lt]
    i_size = jnp.ones((batch, li), jnp.float32)  # [B, Li]
    source = init_source(batch, li) if track_source else None
    sources = []  # the image stream's source map after each reduction
    policy = None  # DynamicViT's training-time keep mask over image tokens
    keep_fractions = []
    image_tokens, text_tokens = [li], [lt]
    hidden = {"fusion_text": [], "fusion_image": []}
    attn = {k: [] for k in ("fusion_text_self", "fusion_text_cross",
                            "fusion_image_self", "fusion_image_cross")}

    for i, (text_layer, image_layer) in enumerate(
        zip(self.text_layers, self.image_layers)):
      hidden["fusion_text"].append(text)
      hidden["fusion_image"].append(image)
      counts = schedule.at(i)
      pumer = counts is not None and rc.method == "pumer"
      if counts is not None and rc.method == "dynamicvit":
        # Before the block, as DynamicViT's reference (`pruning_loc`).
        predictor = self.keep_predictors[schedule.layers.index(i)]
        (image, i_size, source), policy, kept = reduce_sequence(
            rc, counts, Tokens(image, i_size, source), keys=None, text_len=0,
            predictor=predictor, policy=policy,
            gumbel_rng=lambda: self.make_rng("gumbel"), train=train)
        if kept is not None:
          keep_fractions.append(kept)
      x, self_aux, cross_aux = text_layer.attend(
          text, t_size, image, i_size, context_policy=policy,
          head_gate=gate_row(gates, "fusion_text", "heads", i),
          cross_head_gate=gate_row(gates, "fusion_text", "cross_heads", i),
          deterministic=det, need_probs=(probs, probs or pumer))
      attn["fusion_text_self"].append(self_aux["probs"])
      attn["fusion_text_cross"].append(cross_aux["probs"])
      block_text, block_size = text, t_size
      x_size = t_size
      if pumer and rc.official:
        (x, x_size, _), (image, i_size, source) = pumer_two_stream_official(
            x, t_size, self_aux["keys"], image, cross_aux["keys"],
            cross_aux["dropped_probs"], counts, score_heads=rc.score_heads,
            source=source)
      elif pumer:
        (x, x_size, _), (image, i_size, source) = pumer_two_stream(
            x, t_size, self_aux["keys"], image, i_size, cross_aux["keys"],
            cross_aux["probs"], counts, protect_cls=rc.protect_cls,
            source=source, score_heads=rc.score_heads)
      elif counts is not None and rc.method == "tome":  # the image alone
        (image, i_size, source), _, _ = reduce_sequence(
            rc, counts, Tokens(image, i_size, source),
            keys=cross_aux["keys"], text_len=0)
      if counts is not None and track_source:
        sources.append(source)
      text = text_layer.feed_forward(
          x, unit_gate=gate_row(gates, "fusion_text", "units", i),
          deterministic=det)
      # METER's image side reads the block's input text; PuMer's the text
      # side's output (`fusion_order`).
      context, context_size = ((text, x_size) if c.fusion_order == "text_first"
                               else (block_text, block_size))
      y, i_self_aux, i_cross_aux = image_layer.attend(
          image, i_size, context, context_size, key_policy=policy,
          head_gate=gate_row(gates, "fusion_image", "heads", i),
          cross_head_gate=gate_row(gates, "fusion_image", "cross_heads", i),
          deterministic=det, need_probs=(probs, probs))
      attn["fusion_image_self"].append(i_self_aux["probs"])
      attn["fusion_image_cross"].append(i_cross_aux["probs"])
      image = image_layer.feed_forward(
          y, unit_gate=gate_row(gates, "fusion_image", "units", i),
          deterministic=det)
      t_size = x_size
      if counts is not None and not (train and rc.method == "dynamicvit"):
        expected = ((counts.image_out, counts.text_out)
                    if rc.method != "tome" else (counts.tokens_out, lt))
        if (image.shape[1], text.shape[1]) != expected:
          raise AssertionError(
              f"fusion block {i} produced {image.shape[1]} image and "
              f"{text.shape[1]} text tokens; the schedule says {expected}.")
      image_tokens.append(image.shape[1])
      text_tokens.append(text.shape[1])

    hidden["fusion_text"].append(text)
    hidden["fusion_image"].append(image)
    pooled = jnp.concatenate(
        [jnp.tanh(self.text_pooler(text[:, 0])),
         jnp.tanh(self.image_pooler(image[:, 0]))], axis=-1)  # [B, 2D]
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
    if keep_fractions:
      out["keep_fractions"] = tuple(keep_fractions)
    if track_source:
      out["source"] = source
      out["sources"] = tuple(sources)
      out["size"] = i_size
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
