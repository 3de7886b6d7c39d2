"""`ReduceConfig`: the one protocol every token-reduction method implements,
and the registry of methods by name.

A method is a frozen dataclass subclassing `ReduceConfig`: its fields are
its config (validated in `__post_init__`, so a bad value fails when the
config is read), its methods say everything a model, a trainer or a tool
needs to know of it. `register` adds it to `METHODS` under its `method`
name; a user's own file can do the same:

    @register
    @dataclasses.dataclass(frozen=True)
    class Mine(ReduceConfig):
      method: ClassVar[str] = "mine"
      layers: tuple[int, ...] = ()
      ...

`ReduceConfig(method="pumer", layers=(2, 5, 8), ...)` builds the named
method's config; `ReduceConfig()` is the unreduced model. Nothing outside
the methods compares a method's name: code asks the config instead
(`plan`, `needs`, `where`, `reduce_streams`, `search_space`, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import jax

from pumer_jax.reduce.counts import LayerCounts
from pumer_jax.reduce.protocol import (
    AttentionRule,
    AttentionView,
    Context,
    Geometry,
    Needs,
    Where,
)
from pumer_jax.reduce.schedule import ReductionSchedule
from pumer_jax.reduce.tokens import Tokens

# name -> method class: the built-ins (`reduce/methods/`) and any a user
# registers.
METHODS: dict[str, type["ReduceConfig"]] = {}

ARCHS = ("vilt", "meter")


def method_class(name: str) -> type["ReduceConfig"]:
  """The method registered as `name`; an error names every choice."""
  if name not in METHODS:
    raise ValueError(
        f"reduce.method={name!r} is not a method; use one of "
        f"{sorted(METHODS)} (or register your own with "
        "pumer_jax.reduce.register).")
  return METHODS[name]


class _ByMethodName(type):
  """`ReduceConfig(method=name, **fields)` builds the class registered as
  `name`; a method class itself is built as any dataclass."""

  def __call__(cls, *args, **kwargs):
    if cls is ReduceConfig:
      if args:
        raise TypeError("ReduceConfig takes keyword arguments: "
                        "ReduceConfig(method='pumer', layers=(2, 5, 8)).")
      return method_class(kwargs.pop("method", "none"))(**kwargs)
    return super().__call__(*args, **kwargs)


@dataclasses.dataclass(frozen=True)
class ReduceConfig(metaclass=_ByMethodName):
  """A token-reduction method and its settings (config key `reduce`).

  Subclasses set the class attributes and override what differs from the
  defaults here (which are the unreduced model's).
  """

  # The name configs and CLIs use (`reduce.method`); its registry key.
  method: ClassVar[str] = ""
  # Its name in tables and plots.
  label: ClassVar[str] = ""
  where: ClassVar[Where] = Where.AFTER_ATTENTION
  # The Flax scope its own parameters live under, one per stage:
  # f"{param_name}_{stage}" (DynamicViT: "keep_predictor").
  param_name: ClassVar[str] = ""

  # --- config --------------------------------------------------------------

  def to_dict(self) -> dict[str, Any]:
    """`{"method": name, **fields}`: what configs and JSON files hold."""
    return {"method": self.method, **dataclasses.asdict(self)}

  @classmethod
  def field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))

  @classmethod
  def from_mapping(cls, mapping: Mapping[str, Any] | None) -> "ReduceConfig":
    """From a dict or ConfigDict (`method` plus that method's fields).

    A key the method does not have is an error naming its fields.
    """
    values = dict(mapping.items()) if mapping is not None else {}
    target = method_class(values.pop("method", "none"))
    names = set(target.field_names())
    unknown = sorted(set(values) - names)
    if unknown:
      raise ValueError(
          f"reduce config has unknown keys {unknown} for reduce.method="
          f"{target.method!r}; its keys: {sorted(names)}.")
    return target(**{k: _freeze(v) for k, v in values.items()})

  def replace(self, **changes) -> "ReduceConfig":
    """A copy with `changes`; a new `method` keeps only the fields it has."""
    if "method" not in changes:
      return dataclasses.replace(self, **changes)
    target = method_class(changes.pop("method"))
    kept = {k: v for k, v in dataclasses.asdict(self).items()
            if k in target.field_names()}
    return target(**{**kept, **changes})

  # --- the static plan -----------------------------------------------------

  def plan(self, geometry: Geometry, train: bool) -> tuple[LayerCounts, ...]:
    """The counts of every layer that reduces, validated against the model
    (layers within its depth, counts within what the method can remove).
    `train`: the training program's counts (a method that masks instead of
    dropping in training keeps every token there)."""
    del geometry, train
    return ()

  def input_image_len(self, geometry: Geometry) -> int:
    """Image tokens entering the first layer (a method acting on the input
    may change them)."""
    return geometry.image_len

  def schedule(self, geometry: Geometry, train: bool = False
               ) -> ReductionSchedule:
    """Every token count of the model under this method, as Python ints."""
    if geometry.arch not in ARCHS:
      raise ValueError(f"arch={geometry.arch!r} must be one of {ARCHS}.")
    for name, least in (("depth", 1), ("image_len", 1), ("text_len", 0)):
      value = getattr(geometry, name)
      if not isinstance(value, int) or value < least:
        raise ValueError(f"{name}={value!r} must be an int >= {least}.")
    return ReductionSchedule(
        self.method, geometry.depth, self.input_image_len(geometry),
        geometry.text_len, tuple(self.plan(geometry, train)),
        before_block=self.where is Where.BEFORE_BLOCK)

  # --- what the model does for it ------------------------------------------

  def needs(self) -> Needs:
    return Needs()

  def attention_rule(self) -> AttentionRule:
    """How attention weighs keys under this method (sizes, softmax)."""
    return AttentionRule()

  def input_size(self, image_hw: tuple[int, int]) -> tuple[int, int]:
    """The (H, W) the model's patch embedding sees for input `image_hw`."""
    return image_hw

  def prepare_pixels(self, pixel_values: jax.Array, patch_size: int
                     ) -> jax.Array:
    """The input images as the method feeds them (NHWC, any leading dims)."""
    del patch_size
    return pixel_values

  def param_spec(self, hidden_size: int) -> dict[str, Any] | None:
    """One stage's own parameters, a nested dict of `Param`s, or None."""
    del hidden_size
    return None

  def param_stages(self) -> int:
    """How many stages own a `param_spec` set (0 without one)."""
    return 0

  # --- the reduction -------------------------------------------------------

  def reduce_sequence(self, counts: LayerCounts, tokens: Tokens,
                      view: AttentionView | None, text_len: int,
                      ctx: Context) -> tuple[Tokens, Any]:
    """Reduces one `[text; image]` stream (ViLT) at a reduction layer.

    `tokens`' first `text_len` slots are text. The default splits the
    stream and calls `reduce_streams`; a modality-blind method overrides it.
    Returns the reduced stream and this stage's auxiliary output (collected
    for `loss_terms`; None for none).
    """
    text, image = tokens.split(text_len)
    text, image, aux = self.reduce_streams(counts, text, image, view, ctx)
    return text.join(image), aux

  def reduce_streams(self, counts: LayerCounts, text: Tokens, image: Tokens,
                     view: AttentionView | None, ctx: Context
                     ) -> tuple[Tokens, Tokens, Any]:
    """Reduces separate text and image streams (METER; ViLT by default).

    Returns `(text, image, aux)` with `counts.text_out` text and
    `counts.image_out` image slots.
    """
    raise NotImplementedError(
        f"{type(self).__name__} defines no reduction; implement "
        "reduce_streams (or reduce_sequence).")

  def loss_terms(self, aux: tuple[Any, ...]) -> dict[str, tuple[float, Any]]:
    """Extra training losses from the stages' aux outputs:
    `{name: (weight, value)}`; the trainer adds `weight * value`."""
    del aux
    return {}

  # --- tools ---------------------------------------------------------------

  @classmethod
  def search_space(cls, geometry: Geometry,
                   image_hw: tuple[int, int]) -> list["ReduceConfig"]:
    """Every setting `pumer_jax.search` tries on a model (empty: none)."""
    del geometry, image_hw
    return []

  def describe(self) -> str:
    """A short label of this setting for tables and plots."""
    return self.label or self.method


def _freeze(value: Any) -> Any:
  """Lists (from JSON or a ConfigDict) as tuples, so configs hash."""
  if isinstance(value, (list, tuple)):
    return tuple(_freeze(v) for v in value)
  return value


def register(cls: type[ReduceConfig]) -> type[ReduceConfig]:
  """Adds a method class to `METHODS` under its `method` name (a class
  decorator). A name already taken by another class is an error."""
  if not (isinstance(cls, type) and issubclass(cls, ReduceConfig)
          and dataclasses.is_dataclass(cls)):
    raise TypeError(f"{cls!r} is not a ReduceConfig dataclass; subclass "
                    "ReduceConfig and decorate it with "
                    "@dataclasses.dataclass(frozen=True).")
  name = cls.method
  if not isinstance(name, str) or not name:
    raise ValueError(f"{cls.__name__} needs a `method` name (a ClassVar).")
  if name in METHODS and METHODS[name] is not cls:
    raise ValueError(f"method name {name!r} is taken by "
                     f"{METHODS[name].__qualname__}; pick another.")
  METHODS[name] = cls
  return cls
