"""Shared Flax building blocks: size-aware attention, MLP, parameter helpers.

Attention takes the token sizes of its keys (DESIGN 3): a key of size s gets
weight s in the softmax (ToMe's proportional attention, `log(s)` added to the
logits), padding (size 0) gets none. With all sizes 1 or 0 this is exactly
masked attention. The weight is applied multiplicatively, so it is also
differentiable in the size (DynamicViT trains its keep decisions through it).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
INIT_STD = 0.02
# The dtypes a model config may name, and what they compute in.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def dense(
    features: int,
    axes: tuple[str | None, str | None],
    name: str,
    *,
    use_bias: bool = True,
    dtype: Dtype = jnp.float32,
) -> nn.Dense:
  """A Dense layer whose kernel and bias carry logical axis names."""
  return nn.Dense(
      features,
      use_bias=use_bias,
      dtype=dtype,
      kernel_init=nn.with_logical_partitioning(
          nn.initializers.normal(INIT_STD), axes
      ),
      bias_init=nn.with_logical_partitioning(
          nn.initializers.zeros_init(), (axes[1],)
      ),
      name=name,
  )


def layer_norm(eps: float, name: str, dtype: Dtype = jnp.float32):
  return nn.LayerNorm(
      epsilon=eps,
      dtype=dtype,
      scale_init=nn.with_logical_partitioning(
          nn.initializers.ones_init(), ("embed",)
      ),
      bias_init=nn.with_logical_partitioning(
          nn.initializers.zeros_init(), ("embed",)
      ),
      name=name,
  )


def embed(num: int, features: int, name: str, dtype: Dtype = jnp.float32):
  return nn.Embed(
      num,
      features,
      dtype=dtype,
      embedding_init=nn.with_logical_partitioning(
          nn.initializers.normal(INIT_STD), ("vocab", "embed")
      ),
      name=name,
  )


def constrain_batch(x: jax.Array) -> jax.Array:
  """Shards activations on the batch axis only, so token gathers stay local."""
  return nn.with_logical_constraint(x, ("batch",) + (None,) * (x.ndim - 1))


class Bias(nn.Module):
  """A learned bias alone: what a fully pruned attention or FFN leaves."""

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, batch_shape: tuple[int, ...]) -> jax.Array:
    bias = self.param("bias", nn.with_logical_partitioning(
        nn.initializers.zeros_init(), ("embed",)), (self.features,))
    return jnp.broadcast_to(bias.astype(self.dtype),
                            tuple(batch_shape) + (self.features,))


def attention_weights(
    logits: jax.Array, key_weight: jax.Array, key_present: jax.Array
) -> jax.Array:
  """Softmax of `logits` with each key's mass scaled by `key_weight`.

  Equals `softmax(logits + log(key_weight))`, with weight 0 exactly masked.
  Absent keys (padding) are excluded before the max is taken: were a
  padded key's logit far above the real ones, the real masses would
  underflow and the gradient of the normalisation (~1/total^2) overflow.

  Args:
    logits: [B, H, Nq, Nk] float32.
    key_weight: [B, Nk] non-negative; may be 0 for present keys (a
      DynamicViT-dropped token), which stay differentiable in the weight.
    key_present: [B, Nk] bool, False for padding.

  Returns:
    [B, H, Nq, Nk] probabilities (rows sum to 1 when any key has weight).
  """
  present = key_present[:, None, None, :]
  logits = jnp.where(present, logits, -jnp.inf)
  peak = jax.lax.stop_gradient(logits.max(axis=-1, keepdims=True))
  peak = jnp.where(jnp.isfinite(peak), peak, 0.0)  # rows with no key at all
  mass = jnp.exp(logits - peak) * key_weight[:, None, None, :]
  total = mass.sum(axis=-1, keepdims=True)
  return mass / jnp.maximum(total, jnp.finfo(mass.dtype).tiny)


# The reference's epsilon in its masked softmax (PuMer's `common.py`).
OFFICIAL_SOFTMAX_EPS = 1e-6


def official_attention_weights(logits: jax.Array, mask: jax.Array,
                               eps: float = OFFICIAL_SOFTMAX_EPS,
                               self_weight: bool = True) -> jax.Array:
  """PuMer's (and DynamicViT's) reference masked softmax.

  `exp(logit - max) * m` over all keys, normalised with a small epsilon:
  `(w + eps / Nk) / (sum(w) + eps)`. The mask `m` may be fractional (merged
  text) and multiplies the weight; the max runs over every key, masked
  ones too; and query i always keeps full weight on key i (`m + (1 - m) *
  eye`), so a padded or merged token attends to itself. The eye is
  rectangular for cross-attention: image query i then keeps key i of the
  text, as the reference does (`self_weight=False` drops the eye). The
  epsilon bounds the gradient where every kept key's weight underflows.

  Args:
    logits: [B, H, Nq, Nk] float32.
    mask: [B, Nk] in [0, 1].

  Returns:
    [B, H, Nq, Nk] probabilities.
  """
  nq, nk = logits.shape[-2:]
  mask = mask.astype(jnp.float32)[:, None, None, :]  # [B, 1, 1, Nk]
  eye = jnp.eye(nq, nk, dtype=jnp.float32)[None, None]  # [1, 1, Nq, Nk]
  weight = mask + (1.0 - mask) * eye if self_weight else mask
  peak = jax.lax.stop_gradient(logits.max(axis=-1, keepdims=True))
  mass = jnp.exp(logits - peak) * weight
  return (mass + eps / nk) / (mass.sum(axis=-1, keepdims=True) + eps)


# Backends whose layers without a reducer run the fused attention. XLA:GPU
# lowers it to cuDNN's kernel; XLA:CPU materialises more than the explicit
# softmax (METER-B/16 at 384, batch 64: 4584 vs 2804 MiB of temporaries,
# compiled), so CPU keeps the explicit one.
FUSED_ATTENTION_BACKENDS = {"gpu", "cuda", "rocm", "tpu"}


def fused_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                    key_weight: jax.Array, key_present: jax.Array
                    ) -> jax.Array:
  """`attention_weights`' attention through `jax.nn.dot_product_attention`.

  Args:
    q: [B, Nq, H, Dh]; k, v: [B, Nk, H, Dh].
    key_weight: [B, Nk] positive for present keys (their sizes, or 1).
    key_present: [B, Nk] bool, False for padding.

  Returns:
    [B, Nq, H, Dh] in `q`'s dtype. Every row needs a present key (the
    models' first text token always is).
  """
  bias = jnp.log(jnp.where(key_present, key_weight, 1.0))  # [B, Nk]
  return jax.nn.dot_product_attention(
      q, k, v, bias=bias[:, None, None, :].astype(q.dtype),
      mask=key_present[:, None, None, :])


class MultiHeadAttention(nn.Module):
  """Multi-head attention over sized keys; exposes what reducers need.

  Returns the output and a dict with `keys` (head-mean keys, [B, Nk, Dh],
  ToMe's merge metric), `probs` ([B, H, Nq, Nk], or None where the fused
  path ran) and `dropped_probs` (the same after attention dropout: what
  PuMer's reference scores with in training). With `official_softmax`
  the weights are PuMer's reference masked softmax
  (`official_attention_weights`, `key_size` read as its fractional mask). On a backend in `FUSED_ATTENTION_BACKENDS`, a layer that
  needs no probabilities (`need_probs=False`: no PuMer step, no attention
  output, no attention dropout or DynamicViT policy) runs
  `jax.nn.dot_product_attention`, which XLA lowers to cuDNN's fused kernel
  on GPU; the key sizes enter as its bias, `log(size)`, and padding as its
  mask, so both paths compute the same attention. A layer whose reducer
  reads only some rows (`prob_rows`: PuMer's text queries, EViT's image
  [CLS]) runs the kernel too and recomputes just those rows from q and k
  (`tests/test_recomputed_probs.py`: parity to 1e-5;
  `benchmarks/recomputed_probs.py` times both paths).
  """

  num_heads: int
  hidden_size: int
  qkv_bias: bool = True
  dropout_rate: float = 0.0
  prop_attn: bool = True
  dtype: Dtype = jnp.float32
  # Set when heads were pruned away (EfficientVLM): the width of each head
  # stays hidden_size / (the unpruned head count). 0 heads is allowed: the
  # attention then adds only its output bias.
  head_dim: int | None = None
  official_softmax: bool = False

  @nn.compact
  def __call__(
      self,
      x: jax.Array,
      key_size: jax.Array,
      context: jax.Array | None = None,
      *,
      key_policy: jax.Array | None = None,
      head_gate: jax.Array | None = None,
      deterministic: bool = True,
      need_probs: bool = True,
      prob_rows: slice | None = None,
      fused: bool | None = None,
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Args:
      x: [B, Nq, D] queries (and keys/values when `context` is None).
      key_size: [B, Nk] key sizes; 0 masks a key.
      context: [B, Nk, Dc] keys/values for cross-attention.
      key_policy: [B, Nk] optional differentiable keep mask (DynamicViT).
      head_gate: [H] or [B, H] optional per-head scale of the context
        (EfficientVLM's head gates, before the output projection).
      deterministic: disables attention dropout.
      need_probs: return the probabilities (else the fused kernel may run).
      prob_rows: with `need_probs`, the only query rows (a static slice)
        whose probabilities are read: the fused kernel may then still run
        and those rows alone are recomputed from q and k with the same
        sizes and masks (`aux["prob_rows"]` says which rows `probs` holds).
        Not with attention dropout, a DynamicViT policy or the official
        softmax (its epsilon and self-weight are not the kernel's): those
        take the explicit path.
      fused: run the fused kernel where it may (None: on the backends of
        `FUSED_ATTENTION_BACKENDS`).
    """
    context = x if context is None else context
    head_dim = self.head_dim or self.hidden_size // self.num_heads
    if self.num_heads == 0:  # every head pruned: the output bias remains
      batch, nq, nk = x.shape[0], x.shape[1], context.shape[1]
      return Bias(self.hidden_size, self.dtype, name="out")((batch, nq)), {
          "keys": jnp.zeros((batch, nk, head_dim), self.dtype),
          "probs": jnp.zeros((batch, 0, nq, nk), jnp.float32),
          "dropped_probs": jnp.zeros((batch, 0, nq, nk), jnp.float32)}
    shape = (self.num_heads, head_dim)

    def project(name, inputs):
      out = dense(self.num_heads * head_dim, ("embed", "joined_kv"), name,
                  use_bias=self.qkv_bias, dtype=self.dtype)(inputs)
      return out.reshape(out.shape[:-1] + shape)  # [B, N, H, Dh]

    q = project("query", x)
    k = project("key", context)
    v = project("value", context)
    weight = key_size if self.prop_attn else (key_size > 0)
    weight = weight.astype(jnp.float32)
    dropout = self.dropout_rate > 0 and not deterministic
    if fused is None:
      fused = jax.default_backend() in FUSED_ATTENTION_BACKENDS
    explicit = ((need_probs and prob_rows is None) or dropout
                or key_policy is not None or self.official_softmax)
    rows = None
    if fused and not explicit:
      ctx = fused_attention(q, k, v, weight, key_size > 0)  # [B, Nq, H, Dh]
      probs = dropped = None
      if need_probs:  # only the rows read, from the same q and k
        rows = prob_rows
        probs = dropped = attention_weights(
            _logits(q[:, rows], k, head_dim), weight, key_size > 0)
    else:
      # Head-major operands ([B, H, N, Dh]): jaxlib 0.10's YNNPACK fusion
      # runs the token-major einsums ~1.1-4x slower (pumer_jax/xla_cpu.py);
      # other backends are indifferent.
      vh = v.transpose(0, 2, 1, 3)
      logits = _logits(q, k, head_dim)
      if key_policy is not None:
        weight = weight * key_policy.astype(jnp.float32)
      if self.official_softmax:
        probs = official_attention_weights(logits, key_size)
      elif key_policy is not None:
        # DynamicViT's training mask, as its reference: each query keeps
        # its own key (self-attention), and the epsilon keeps gradients
        # finite when the kept keys' weights underflow next to a dropped
        # key's peak logit.
        probs = official_attention_weights(logits, weight,
                                           self_weight=context is x)
      else:
        probs = attention_weights(logits, weight, key_size > 0)  # [B,H,Nq,Nk]
      dropped = nn.Dropout(self.dropout_rate)(probs, deterministic)
      ctx = jnp.einsum("bhqk,bhkd->bhqd", dropped.astype(self.dtype), vh)
      ctx = ctx.transpose(0, 2, 1, 3)  # [B, Nq, H, Dh]
    if head_gate is not None:
      gate = head_gate if head_gate.ndim == 2 else head_gate[None]
      ctx = ctx * gate[:, None, :, None].astype(ctx.dtype)
    ctx = ctx.reshape(ctx.shape[:2] + (-1,))  # [B, Nq, H*Dh]
    out = dense(self.hidden_size, ("joined_kv", "embed"), "out",
                dtype=self.dtype)(ctx)
    aux = {"keys": k.mean(axis=2), "probs": probs, "dropped_probs": dropped}
    if rows is not None:
      aux["prob_rows"] = rows
    return out, aux


def _logits(q: jax.Array, k: jax.Array, head_dim: int) -> jax.Array:
  """Scaled attention logits [B, H, Nq, Nk] in float32 from [B, N, H, Dh]
  queries and keys, contracted head-major."""
  qh, kh = q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3)
  logits = jnp.einsum("bhqd,bhkd->bhqk", qh, kh).astype(jnp.float32)
  return logits / jnp.sqrt(jnp.float32(head_dim))


class Mlp(nn.Module):
  """Dense -> activation -> Dense, with an optional per-unit gate."""

  intermediate_size: int
  hidden_size: int
  activation: str = "gelu"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
      self, x: jax.Array, unit_gate: jax.Array | None = None
  ) -> jax.Array:
    if self.intermediate_size == 0:  # every unit pruned: fc2's bias remains
      return Bias(self.hidden_size, self.dtype, name="fc2")(x.shape[:-1])
    h = dense(self.intermediate_size, ("embed", "mlp"), "fc1",
              dtype=self.dtype)(x)
    h = ACTIVATIONS[self.activation](h)
    if unit_gate is not None:
      h = h * unit_gate.astype(h.dtype)
    return dense(self.hidden_size, ("mlp", "embed"), "fc2", dtype=self.dtype)(h)


def gate_row(gates: dict | None, module: str, kind: str, layer: int
             ) -> jax.Array | None:
  """Layer `layer`'s row of EfficientVLM's gate tree, or None (ungated).

  `gates` is `{module: {kind: [layers, n]}}` (see `compress/gates.py`).
  """
  if gates is None or module not in gates or kind not in gates[module]:
    return None
  return gates[module][kind][layer]


PrunedSizes = tuple[tuple[str, str, tuple[int, ...]], ...]


def pruned_size(pruned: PrunedSizes, module: str, kind: str, layer: int,
                default: int) -> int:
  """Layer `layer`'s head count or FFN width after EfficientVLM's slicing.

  `pruned` holds `(module, kind, sizes per layer)` rows, the kinds of the
  gate tree (`heads`, `cross_heads`, `units`); `default` where absent.
  """
  for m, k, sizes in pruned:
    if (m, k) == (module, kind):
      return sizes[layer]
  return default


def quick_gelu(x: jax.Array) -> jax.Array:
  return x * jax.nn.sigmoid(1.702 * x)


ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "quick_gelu": quick_gelu,
    "relu": jax.nn.relu,
}
