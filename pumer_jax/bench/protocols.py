"""Memory protocols beside the inference forward, and the train step.

Three programs per method, each compiled for the same shapes:

- **inference**: the jitted forward (`programs.compile_forward`); its
  compiled temporaries are the benchmark's `activation_bytes`. A reduced
  model's peak there sits in its first, unreduced layers, so a cut in later
  layers hardly shows.
- **autograd**: the paper's protocol. PuMer's `cli/bench.py` reads
  `torch.cuda.max_memory_allocated` with the model in `eval()` mode but
  without `torch.no_grad()`, so autograd keeps every layer's saved tensors
  for a backward pass that never comes, and layers holding fewer tokens
  keep less. Here: the forward half of `jax.vjp` with respect to the
  parameters, compiled, returning the residuals the backward pass would
  read (eval mode, as the paper's). Its bytes are the weights and inputs,
  the temporaries, and the residuals (those that are an argument, a weight
  or an input, counted once): what PyTorch holds at the end of such a
  forward.
- **train**: one optimiser step, forward and backward in training mode
  (dropout and Gumbel keys drawn, DynamicViT masking) and AdamW, weights
  and optimiser state donated as a trainer donates them. A cross-entropy
  on random labels stands in for the task loss (the same cost for any
  head), plus the reducer's own loss terms.

All figures are XLA's `memory_analysis()` of the compiled program, on every
backend; the device allocator's peak is read only for inference (JAX cannot
reset it between programs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from pumer_jax.bench.measure import compiled_output_bytes
from pumer_jax.bench.presets import ModelConfig
from pumer_jax.bench.programs import head_output
from pumer_jax.models import ARCHITECTURES, ReduceConfig, architecture_of

# The train step's optimiser: AdamW at a fine-tuning rate (its cost, not
# its value, is measured).
TRAIN_LR = 1e-4


def _module(model: ModelConfig, reduce: ReduceConfig):
  return ARCHITECTURES[architecture_of(model)].module(
      model.replace(reduce=reduce))


def compile_autograd_forward(model: ModelConfig, reduce: ReduceConfig,
                             params: Any, inputs: Sequence[Any]):
  """The eval-mode forward that keeps its backward's residuals, compiled
  for the inputs' shapes (input_ids, attention_mask, NHWC pixel_values)."""
  vilt = _module(model, reduce)

  def forward_keeping_residuals(params, input_ids, attention_mask,
                                pixel_values):
    def forward(p):
      return head_output(vilt.apply({"params": p}, input_ids=input_ids,
                                attention_mask=attention_mask,
                                pixel_values=pixel_values, train=False))

    out, backward = jax.vjp(forward, params)
    arguments = jax.tree.leaves((params, input_ids, attention_mask,
                                 pixel_values))
    # A residual that is an argument is already counted among them.
    kept = [r for r in jax.tree.leaves(backward)
            if not any(r is a for a in arguments)]
    return out, kept

  return jax.jit(forward_keeping_residuals).lower(params, *inputs).compile()


def residual_bytes(compiled) -> int | None:
  """Bytes of what an autograd forward keeps for its backward (its outputs
  but the logits are negligible beside them)."""
  return compiled_output_bytes(compiled)


def _train_loss(vilt, reduce: ReduceConfig) -> Callable[..., jax.Array]:
  def loss(params, input_ids, attention_mask, pixel_values, labels, rng):
    dropout, gumbel = jax.random.split(rng)
    out = vilt.apply({"params": params}, input_ids=input_ids,
                     attention_mask=attention_mask, pixel_values=pixel_values,
                     train=True, rngs={"dropout": dropout, "gumbel": gumbel})
    logits = head_output(out).astype(jnp.float32)
    total = optax.softmax_cross_entropy_with_integer_labels(
        logits, labels % logits.shape[-1]).mean()
    for weight, value in reduce.loss_terms(
        out.get("reducer_aux", ())).values():
      total = total + weight * value
    return total

  return loss


def compile_train_step(model: ModelConfig, reduce: ReduceConfig, params: Any,
                       inputs: Sequence[Any]):
  """`(compiled, init_opt_state)`: one AdamW step `(params, opt_state,
  input_ids, attention_mask, pixel_values, labels, rng) -> (params,
  opt_state, loss)`, params and opt_state donated."""
  vilt = _module(model, reduce)
  tx = optax.adamw(TRAIN_LR)
  loss = _train_loss(vilt, reduce)

  def step(params, opt_state, input_ids, attention_mask, pixel_values,
           labels, rng):
    value, grads = jax.value_and_grad(loss)(
        params, input_ids, attention_mask, pixel_values, labels, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  batch = inputs[0].shape[0]
  opt_state = jax.eval_shape(tx.init, params)
  labels = jax.ShapeDtypeStruct((batch,), jnp.int32)
  rng = jax.eval_shape(lambda: jax.random.PRNGKey(0))
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, opt_state, *inputs, labels, rng).compile()
  return compiled, tx.init


class TrainLoop:
  """Calls a compiled train step on its own copy of the weights, feeding
  each step's donated outputs to the next (so it can be timed)."""

  def __init__(self, compiled, init_opt_state, params: Any,
               inputs: Sequence[jax.Array], seed: int = 0):
    self._compiled = compiled
    self._params = jax.tree.map(jnp.copy, params)  # donated: not the shared
    self._opt_state = init_opt_state(self._params)
    batch = inputs[0].shape[0]
    self._rest = (*inputs, jnp.arange(batch, dtype=jnp.int32),
                  jax.random.PRNGKey(seed))

  def __call__(self) -> jax.Array:
    self._params, self._opt_state, loss = self._compiled(
        self._params, self._opt_state, *self._rest)
    return loss
