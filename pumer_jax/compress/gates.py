"""Where EfficientVLM's gates sit in a model, and what each one is worth.

One hard-concrete gate per attention head (scaling the head's context
before the output projection) and per FFN unit (scaling the unit after the
activation), in every layer of every module (DESIGN 4.6). Gates travel as
a tree `{module: {kind: [layers, n]}}`, kinds `heads` (self-attention),
`cross_heads` (METER's fusion cross-attention) and `units`; the models take
it as `gates=` and pass each row to its layer. The parameters a gate
controls are counted from the model's parameter tree, never hard-coded.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp

from pumer_jax.compress import hard_concrete
from pumer_jax.models import MeterConfig, ViltConfig, param_count

Path = tuple[str, ...]
# Which report module each gate module belongs to: the modal split.
MODALITY = {"vilt": "fusion", "vision": "vision", "text": "text",
            "fusion_text": "fusion", "fusion_image": "fusion"}


@dataclasses.dataclass(frozen=True)
class GateGroup:
  """The gates of one kind in one module: `layers` rows of `size` gates.

  `paths[i]` is the parameter path of layer i's gated submodule (an
  attention or an MLP).
  """

  module: str
  kind: str
  size: int
  paths: tuple[Path, ...]

  @property
  def layers(self) -> int:
    return len(self.paths)


def gate_groups(config: ViltConfig | MeterConfig) -> tuple[GateGroup, ...]:
  """Every gate group of a model, from its config."""
  if isinstance(config, ViltConfig):
    layers = [("vilt", f"layer_{i}") for i in range(config.num_hidden_layers)]
    return (
        GateGroup("vilt", "heads", config.num_attention_heads,
                  tuple(p + ("attention",) for p in layers)),
        GateGroup("vilt", "units", config.intermediate_size,
                  tuple(p + ("mlp",) for p in layers)),
    )
  c = config
  vision = [("meter", "vision", f"layer_{i}")
            for i in range(c.vision_num_layers)]
  text = [("meter", "text", f"layer_{i}") for i in range(c.text_num_layers)]
  groups = [
      GateGroup("vision", "heads", c.vision_num_heads,
                tuple(p + ("self_attn",) for p in vision)),
      GateGroup("vision", "units", c.vision_intermediate_size,
                tuple(p + ("mlp",) for p in vision)),
      GateGroup("text", "heads", c.text_num_heads,
                tuple(p + ("attention",) for p in text)),
      GateGroup("text", "units", c.text_intermediate_size,
                tuple(p + ("mlp",) for p in text)),
  ]
  for side in ("text", "image"):
    fusion = [("meter", f"{side}_layer_{i}")
              for i in range(c.num_fusion_layers)]
    groups += [
        GateGroup(f"fusion_{side}", "heads", c.num_attention_heads,
                  tuple(p + ("attention",) for p in fusion)),
        GateGroup(f"fusion_{side}", "cross_heads", c.num_attention_heads,
                  tuple(p + ("crossattention",) for p in fusion)),
        GateGroup(f"fusion_{side}", "units", c.intermediate_size,
                  tuple(p + ("mlp",) for p in fusion)),
    ]
  return tuple(groups)


def module_at(params: Any, path: Path) -> Any:
  """The subtree of `params` at `path`."""
  for key in path:
    params = params[key]
  return params


def params_per_gate(group: GateGroup, params: Any) -> tuple[int, ...]:
  """Parameters one gate of `group` controls, per layer, from the tree.

  A head owns its columns of the query/key/value kernels and biases and
  its rows of the output kernel; a unit its column (and bias) of `fc1`
  and its row of `fc2`. The output biases stay whatever the gates say.
  """
  counts = []
  for path in group.paths:
    module = module_at(params, path)
    if group.kind == "units":
      owned = param_count(module["fc1"]) + param_count(module["fc2"]["kernel"])
    else:
      owned = (sum(param_count(module[k]) for k in ("query", "key", "value"))
               + param_count(module["out"]["kernel"]))
    if owned % group.size:
      raise ValueError(
          f"{'/'.join(path)}: {owned} parameters do not split over "
          f"{group.size} {group.kind}; the config does not match the tree.")
    counts.append(owned // group.size)
  return tuple(counts)


@dataclasses.dataclass(frozen=True)
class GateLayout:
  """All gate groups of a model and the parameters behind each gate."""

  groups: tuple[GateGroup, ...]
  per_gate: tuple[tuple[int, ...], ...]  # per group, per layer

  @classmethod
  def build(cls, config: ViltConfig | MeterConfig, params: Any
            ) -> "GateLayout":
    groups = gate_groups(config)
    return cls(groups, tuple(params_per_gate(g, params) for g in groups))

  def init_log_alpha(self, value: float = 3.0) -> dict[str, Any]:
    """Initial `log_alpha` tree; 3.0 makes P(z != 0) ~ 0.99 (all kept)."""
    tree: dict[str, dict[str, jax.Array]] = {}
    for g in self.groups:
      tree.setdefault(g.module, {})[g.kind] = jnp.full(
          (g.layers, g.size), value, jnp.float32)
    return tree

  def prunable_size(self) -> int:
    return sum(g.size * sum(c) for g, c in zip(self.groups, self.per_gate))

  def expected_size(self, log_alpha: Any, by: str | None = None):
    """Sum of P(z != 0) times the parameters each gate controls.

    With `by="modality"`: a dict {vision, text, fusion: (expected, prunable)}.
    """
    total = 0.0
    split: dict[str, list] = {}
    for g, counts in zip(self.groups, self.per_gate):
      weight = jnp.asarray(counts, jnp.float32)[:, None]  # [layers, 1]
      size = (hard_concrete.prob_nonzero(log_alpha[g.module][g.kind])
              * weight).sum()
      total = total + size
      entry = split.setdefault(MODALITY[g.module], [0.0, 0])
      entry[0] = entry[0] + size
      entry[1] += g.size * sum(counts)
    if by == "modality":
      return {k: (v[0], v[1]) for k, v in split.items()}
    return total

  def expected_sparsity(self, log_alpha: Any) -> jax.Array:
    return 1.0 - self.expected_size(log_alpha) / self.prunable_size()


def sample_gates(rng: jax.Array, log_alpha: Any) -> Any:
  """Training masks for every gate (one draw per gate, shared by a batch)."""
  leaves, treedef = jax.tree.flatten(log_alpha)
  rngs = jax.random.split(rng, len(leaves))
  return jax.tree.unflatten(
      treedef, [hard_concrete.sample(r, a) for r, a in zip(rngs, leaves)])


def deterministic_gates(log_alpha: Any) -> Any:
  """Inference masks for every gate (per layer row)."""
  return jax.tree.map(hard_concrete.deterministic_mask, log_alpha)


def lagrangian(sparsity: jax.Array, target: jax.Array, lambdas: jax.Array
               ) -> jax.Array:
  """lambda1 * (s - t) + lambda2 * (s - t)^2, maximised over the lambdas."""
  gap = sparsity - target
  return lambdas[0] * gap + lambdas[1] * gap * gap


def target_at(step: jax.Array, target: float, warmup_steps: int
              ) -> jax.Array:
  """The sparsity target, ramped linearly over the global step, then held."""
  if not 0.0 <= target < 1.0:
    raise ValueError(f"prune.target={target!r} must be in [0, 1).")
  if warmup_steps <= 0:
    return jnp.float32(target)
  frac = jnp.minimum(jnp.asarray(step, jnp.float32) / warmup_steps, 1.0)
  return target * frac


def flip_sign() -> optax.GradientTransformation:
  """Turns an optimiser's descent into ascent: the lambdas maximise."""
  return optax.scale(-1.0)


def gate_transforms(reg_lr: float) -> dict[str, optax.GradientTransformation]:
  """Adam at `prune.reg_lr`: descent for `log_alpha`, ascent for `lambdas`
  (one transform per key of the gate state, `TrainState.gates`)."""
  return {"log_alpha": optax.adam(reg_lr),
          "lambdas": optax.chain(flip_sign(), optax.adam(reg_lr))}


def gate_optimizer(reg_lr: float) -> optax.GradientTransformation:
  """`gate_transforms` over a `{"log_alpha": ..., "lambdas": ...}` tree."""
  labels = lambda tree: {k: jax.tree.map(lambda _: k, v)
                         for k, v in tree.items()}
  return optax.multi_transform(gate_transforms(reg_lr), labels)


def init_state(layout: GateLayout) -> dict[str, Any]:
  """The trainable gate state: `log_alpha` per gate, two lambdas at 0."""
  return {"log_alpha": layout.init_log_alpha(),
          "lambdas": jnp.zeros((2,), jnp.float32)}


def masks(rng: jax.Array, log_alpha: Any, frozen: jax.Array) -> Any:
  """Sampled masks while training, deterministic once `frozen`."""
  sampled = sample_gates(rng, log_alpha)
  fixed = deterministic_gates(log_alpha)
  return jax.tree.map(lambda s, f: jnp.where(frozen, f, s), sampled, fixed)


def save_gate_state(directory, gate_state: Any) -> None:
  """Writes a pruning run's `log_alpha`/`lambdas` (orbax), replacing any."""
  directory = pathlib.Path(directory).absolute()
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(directory, jax.device_get(gate_state), force=True)


def load_gate_state(directory) -> dict[str, Any]:
  """Reads what `save_gate_state` wrote; a clear error when it is absent."""
  directory = pathlib.Path(directory).absolute()
  if not directory.exists():
    raise FileNotFoundError(
        f"{directory} is missing: that run has no gates (train it with "
        "configs/efficientvlm.py:stage=prune first).")
  with ocp.StandardCheckpointer() as ckptr:
    return ckptr.restore(directory)
