"""ViLT: a single-stream vision-language transformer, with token reducers.

Text tokens and image patches share one sequence `[text; image]` through 12
pre-LN blocks. Reducers act inside the blocks listed in `reduce.layers`,
after the attention residual and before the MLP (DESIGN 4.3); DynamicViT
prunes before those blocks, as its reference code. Parameter
names map one-to-one onto Hugging Face `ViltModel` (`pumer_jax.convert`);
the config is `vilt_config.py`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pumer_jax.models.keep_predictor import KeepPredictor
from pumer_jax.models.heads import ClassifierHead, RankHead
from pumer_jax.models.inputs import backbone_passes, unfold_pooled, zero_inputs
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
from pumer_jax.models.positions import sincos2d_init
from pumer_jax.models.reducer_step import Tokens, reduce_sequence
from pumer_jax.models.resize import align_corners_resize
from pumer_jax.models.vilt_config import HF_ARCHITECTURE_HEADS, ViltConfig
from pumer_jax.reduce import init_source

__all__ = ["HF_ARCHITECTURE_HEADS", "Vilt", "ViltConfig", "ViltLayer", "ViltModel",
           "example_inputs"]


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
            nn.initializers.normal(c.patch_init_std),
            (None, None, None, "embed")),
        name="patch_embeddings",
    )(pixel_values.astype(dtype))  # [B, h, w, D]
    batch, h, w, _ = patches.shape
    grid = c.image_size // c.patch_size
    if c.image_position_init == "sincos2d":
      table_init = sincos2d_init(grid, c.image_position_scale)
    else:
      table_init = nn.initializers.normal(INIT_STD)
    table = self.param(
        "position_embeddings",
        nn.with_logical_partitioning(table_init, (None, None, "embed")),
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
        official_softmax=c.reduce.official,
    )
    self.layernorm_after = layer_norm(c.layer_norm_eps, "layernorm_after",
                                      dtype)
    self.mlp = Mlp(
        c.layer_size("vilt", "units", self.layer, c.intermediate_size),
        c.hidden_size, c.hidden_act, dtype)
    self.dropout = nn.Dropout(c.hidden_dropout_prob)

  def attend(self, x, size, *, key_policy=None, head_gate=None,
             deterministic=True, need_probs=True):
    """x + Attention(LN(x)); returns it and the attention's keys/probs."""
    h, aux = self.attention(self.layernorm_before(x), size,
                            key_policy=key_policy, head_gate=head_gate,
                            deterministic=deterministic,
                            need_probs=need_probs)
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
    sources = []  # the source map after each reduction layer
    policy = None  # DynamicViT's training-time keep mask over all tokens
    keep_fractions = []
    tokens, image_tokens, text_tokens = [lt + li], [li], [lt]
    hidden_states, attentions = [], []

    for i, layer in enumerate(self.layers):
      hidden_states.append(x)
      counts = schedule.at(i)
      # DynamicViT prunes before the block (its reference's `pruning_loc`),
      # PuMer and ToMe inside it, after the attention.
      before = counts is not None and rc.method == "dynamicvit"
      after = counts is not None and not before
      if before:
        predictor = self.keep_predictors[schedule.layers.index(i)]
        (x, size, source), policy, kept = reduce_sequence(
            rc, counts, Tokens(x, size, source), keys=None, text_len=lt,
            predictor=predictor, policy=policy,
            gumbel_rng=lambda: self.make_rng("gumbel"), train=train)
        if kept is not None:
          keep_fractions.append(kept)
        lt, li = _modality_lengths(rc.method, counts, lt, li, train)
      # Probabilities only where PuMer scores with them or the caller asks:
      # elsewhere the fused attention kernel runs.
      need_probs = output_attentions or (after and rc.method == "pumer")
      x, aux = layer.attend(x, size, key_policy=policy,
                            head_gate=gate_row(gates, "vilt", "heads", i),
                            deterministic=deterministic,
                            need_probs=need_probs)
      attentions.append(aux["probs"])
      if after:
        # The reference scores with the probabilities after dropout.
        probs = aux["dropped_probs"] if rc.official else aux["probs"]
        (x, size, source), policy, _ = reduce_sequence(
            rc, counts, Tokens(x, size, source), keys=aux["keys"],
            probs=probs, text_len=lt, policy=policy, train=train)
        lt, li = _modality_lengths(rc.method, counts, lt, li, train)
      if counts is not None and track_source:
        sources.append(source)
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
      out["sources"] = tuple(sources)
      out["size"] = size
    return out


def _modality_lengths(method: str, counts, lt: int, li: int, train: bool
                      ) -> tuple[int, int]:
  """Text and image lengths after a reduction layer (-1: mixed by ToMe)."""
  if method == "pumer":
    return counts.text_out, counts.image_out
  if method == "tome":
    return -1, -1
  if method == "dynamicvit" and not train:
    return lt, counts.keep
  return lt, li


class Vilt(nn.Module):
  """ViLT with a task head: the model users apply.

  `apply(variables, input_ids=, attention_mask=, token_type_ids=,
  pixel_values=NHWC, train=False)` returns a dict with `logits` (absent for
  head 'none'), `pooled`, `tokens` (tokens entering each layer, then the
  output count), `image_tokens`/`text_tokens` (-1 where ToMe mixed them),
  and on request `hidden_states`, `attentions`, `source` (and `sources`,
  one map after each reduction layer). NLVR2 takes
  `pixel_values` of shape [B, num_images, H, W, C]. `gates` (EfficientVLM,
  `compress/gates.py`) scale each head's context and each FFN unit.
  Outside `jit` the input values are checked (`inputs.check_values`); inside,
  `debug_checks=True` adds them as `checkify` checks.
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
      debug_checks: bool = False,
  ) -> dict[str, Any]:
    c = self.config
    num_images, inputs = backbone_passes(c, input_ids, pixel_values,
                                         attention_mask, token_type_ids,
                                         debug_checks=debug_checks)
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
