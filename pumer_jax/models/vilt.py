"""ViLT: a single-stream vision-language transformer, with token reducers.

Text tokens and image patches share one sequence `[text; image]` through 12
pre-LN blocks. A reducer (`config.reduce`) acts where it says: inside its
layers after the attention residual and before the MLP (PuMer, ToMe, EViT;
DESIGN 4.3), or just before them (DynamicViT, as its reference code). Parameter
names map one-to-one onto Hugging Face `ViltModel` (`pumer_jax.convert`);
the config is `vilt_config.py`.
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
    INIT_STD,
    Mlp,
    MultiHeadAttention,
    constrain_batch,
    embed,
    gate_row,
    layer_norm,
)
from pumer_jax.models.patch_stem import patch_tokens
from pumer_jax.models.positions import sincos2d_init
from pumer_jax.models.reducer_step import (
    Reducer,
    check_length,
    reducer_params,
    single_stream_rows,
    single_stream_view,
)
from pumer_jax.models.resize import align_corners_resize
from pumer_jax.models.vilt_config import HF_ARCHITECTURE_HEADS, ViltConfig
from pumer_jax.reduce import Tokens, Where, init_source

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

    patches = patch_tokens(
        pixel_values.astype(dtype), stem=c.patch_stem,
        patch_size=c.patch_size, width=d, init_std=c.patch_init_std,
        dtype=dtype)  # [B, h, w, D]
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
    rule = c.reduce.attention_rule()
    self.layernorm_before = layer_norm(c.layer_norm_eps, "layernorm_before",
                                       dtype)
    self.attention = MultiHeadAttention(
        num_heads=c.layer_size("vilt", "heads", self.layer,
                               c.num_attention_heads),
        hidden_size=c.hidden_size, qkv_bias=c.qkv_bias,
        dropout_rate=c.attention_probs_dropout_prob,
        prop_attn=rule.proportional, dtype=dtype,
        head_dim=c.hidden_size // c.num_attention_heads,
        official_softmax=rule.official_softmax,
    )
    self.layernorm_after = layer_norm(c.layer_norm_eps, "layernorm_after",
                                      dtype)
    self.mlp = Mlp(
        c.layer_size("vilt", "units", self.layer, c.intermediate_size),
        c.hidden_size, c.hidden_act, dtype)
    self.dropout = nn.Dropout(c.hidden_dropout_prob)

  def attend(self, x, size, *, key_policy=None, head_gate=None,
             deterministic=True, need_probs=True, prob_rows=None):
    """x + Attention(LN(x)); returns it and the attention's keys/probs."""
    h, aux = self.attention(self.layernorm_before(x), size,
                            key_policy=key_policy, head_gate=head_gate,
                            deterministic=deterministic,
                            need_probs=need_probs, prob_rows=prob_rows)
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
    self.reducer_params = reducer_params(c.reduce, c.hidden_size)
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
    deterministic = not train
    text, image = self.embeddings(input_ids, token_type_ids, pixel_values,
                                  image_type, deterministic)
    batch, lt, li = text.shape[0], text.shape[1], image.shape[1]
    reducer = Reducer(c.reduce, c.schedule(li, lt, train=train),
                      self.reducer_params, lambda: self.make_rng("gumbel"),
                      train)
    tokens = Tokens(
        constrain_batch(jnp.concatenate([text, image], axis=1)),  # [B, N, D]
        jnp.concatenate([attention_mask.astype(jnp.float32),
                         jnp.ones((batch, li))], axis=1),
        init_source(batch, lt + li) if track_source else None)
    lengths = [(lt + li, li, lt)]  # (tokens, image, text) entering each layer
    hidden_states, attentions = [], []

    for i, layer in enumerate(self.layers):
      hidden_states.append(tokens.x)
      counts = reducer.acts(i, Where.BEFORE_BLOCK)
      if counts is not None:
        tokens = reducer.sequence(counts, tokens, None, lt)
        lt, li = _modality_lengths(counts, lt, li)
      # Probabilities only where the reducer scores with them or the caller
      # asks: elsewhere the fused attention kernel may run, and for the
      # reducer alone only the rows it reads are recomputed beside it.
      x, aux = layer.attend(
          tokens.x, tokens.size, key_policy=tokens.policy,
          head_gate=gate_row(gates, "vilt", "heads", i),
          deterministic=deterministic,
          need_probs=output_attentions or reducer.needs_probs(i),
          prob_rows=None if output_attentions else single_stream_rows(
              reducer, i, lt))
      tokens = tokens._replace(x=x)
      attentions.append(aux["probs"])
      counts = reducer.acts(i, Where.AFTER_ATTENTION)
      if counts is not None:
        tokens = reducer.sequence(counts, tokens,
                                  single_stream_view(aux, lt), lt)
        lt, li = _modality_lengths(counts, lt, li)
      tokens = tokens._replace(x=layer.feed_forward(
          tokens.x, unit_gate=gate_row(gates, "vilt", "units", i),
          deterministic=deterministic))
      check_length(i, tokens.length, reducer.schedule.tokens_in(i + 1))
      lengths.append((tokens.length, li, lt))

    hidden_states.append(tokens.x)  # as Hugging Face: the last before the LN
    x = self.layernorm(tokens.x)
    pooled = jnp.tanh(self.pooler(x[:, 0]))
    out = {"pooled": pooled}
    for key, column in (("tokens", 0), ("image_tokens", 1),
                        ("text_tokens", 2)):
      out[key] = jnp.asarray([n[column] for n in lengths], jnp.int32)
    if output_hidden_states:
      out["hidden_states"] = tuple(hidden_states)
    if output_attentions:
      out["attentions"] = tuple(attentions)
    if reducer.aux:
      out["reducer_aux"] = tuple(reducer.aux)
    if track_source:
      out["source"] = tokens.source
      out["sources"] = tuple(reducer.sources)
      out["size"] = tokens.size
    return out


def _modality_lengths(counts, lt: int, li: int) -> tuple[int, int]:
  """Text and image lengths after a reduction layer (-1: a modality-blind
  method mixed them)."""
  if counts.image_in is None:
    return -1, -1
  return counts.text_out, counts.image_out


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
    if c.patch_classes:
      self.patch_head = nn.Dense(
          c.patch_classes, dtype=dtype,
          kernel_init=nn.with_logical_partitioning(
              nn.initializers.normal(INIT_STD), ("embed", None)),
          name="patch_head")
    if c.grounding_layer:
      self.grounding_head = nn.Dense(
          1, dtype=dtype, kernel_init=nn.with_logical_partitioning(
              nn.initializers.normal(INIT_STD), ("embed", None)),
          name="grounding_head")

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
      output_patch_logits: bool = False,
      output_grounding_logits: bool = False,
  ) -> dict[str, Any]:
    c = self.config
    if output_patch_logits and not c.patch_classes:
      raise ValueError("output_patch_logits needs a patch head: set "
                       "model.patch_classes and model.patch_head_layer.")
    if output_grounding_logits and not c.grounding_layer:
      raise ValueError("output_grounding_logits needs a grounding head: set "
                       "model.grounding_layer.")
    if self.is_initializing():
      # Their parameters exist whatever the reducer did to the layers read.
      zeros = jnp.zeros((1, 1, c.hidden_size), DTYPES[c.dtype])
      if c.patch_classes:
        self.patch_head(zeros)
      if c.grounding_layer:
        self.grounding_head(zeros)
    per_patch = output_patch_logits or output_grounding_logits
    num_images, inputs = backbone_passes(c, input_ids, pixel_values,
                                         attention_mask, token_type_ids,
                                         debug_checks=debug_checks)
    out = self.vilt(**inputs, train=train,
                    output_hidden_states=output_hidden_states or per_patch,
                    output_attentions=output_attentions,
                    track_source=track_source, gates=gates)
    text_len = input_ids.shape[1]
    if output_patch_logits:  # [B, patches, patch_classes]
      out["patch_logits"] = self.patch_head(self._patches(
          out, c.patch_head_layer, text_len)).astype(jnp.float32)
    if output_grounding_logits:  # [B, patches]
      out["grounding_logits"] = self.grounding_head(self._patches(
          out, c.grounding_layer, text_len))[..., 0].astype(jnp.float32)
    if per_patch and not output_hidden_states:
      del out["hidden_states"]
    # [B, images * D]: NLVR2's passes side by side.
    out["pooled"] = pooled = unfold_pooled(num_images, out["pooled"])
    if c.head in ("vqa", "ve", "nlvr2"):
      out["logits"] = self.classifier(pooled).astype(jnp.float32)
    elif c.head == "retrieval":
      out["logits"] = self.rank(pooled).astype(jnp.float32)  # [B, 1]
    return out

  def _patches(self, out: dict[str, Any], layer: int, text_len: int
               ) -> jax.Array:
    """[B, P, D]: layer `layer`'s output at every image patch."""
    hidden = out["hidden_states"][layer]  # [B, Lt + 1 + P, D]
    if hidden.shape[1] != out["hidden_states"][0].shape[1]:
      raise ValueError(
          f"a per-patch head reads every patch, but the reducer changed the "
          f"tokens before layer {layer}'s output; train the patch and "
          "grounding heads unreduced (reduce.method='none') or set "
          "loss.patch_weight=0 and loss.grounding_weight=0.")
    return hidden[:, text_len + 1:]


def example_inputs(config: ViltConfig, batch: int = 1,
                   text_len: int | None = None) -> dict[str, np.ndarray]:
  """Zero inputs with the static shapes a model is compiled for.

  The image is `input_size` (else the position table's `image_size`), the
  text `text_len` long (else the whole position table).
  """
  return zero_inputs(config, batch, text_len or config.max_position_embeddings)
