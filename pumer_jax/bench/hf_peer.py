"""The peer a user would pick instead: Hugging Face `transformers` ViLT.

Times `transformers.ViltForQuestionAnswering` (PyTorch, unreduced, random
weights) on the same shapes, device and run as the Flax benchmark, in eager
mode and, where it works, under `torch.compile`, with the same statistics
(`bench.measure.time_jitted`). `bench.runner` calls `run_hf_peer`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import numpy as np

from pumer_jax.bench.measure import (
    Timing, cpu_threads, throughput_summary, time_jitted)
from pumer_jax.models.vilt import ViltConfig

# ViltConfig fields that Hugging Face's ViltConfig takes under the same name.
HF_FIELDS = (
    "vocab_size", "type_vocab_size", "modality_type_vocab_size",
    "max_position_embeddings", "hidden_size", "num_hidden_layers",
    "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "layer_norm_eps",
    "image_size", "patch_size", "num_channels", "qkv_bias",
)


def hf_model(config: ViltConfig, seed: int = 0):
  """A randomly initialised `ViltForQuestionAnswering` of the same sizes."""
  import torch
  import transformers

  torch.manual_seed(seed)
  hf_config = transformers.ViltConfig(
      **{name: getattr(config, name) for name in HF_FIELDS},
      id2label={i: str(i) for i in range(config.num_labels)},
  )
  return transformers.ViltForQuestionAnswering(hf_config).eval()


def hf_inputs(batch: int, text_len: int, image_size: tuple[int, int],
              vocab_size: int, seed: int = 0) -> dict[str, Any]:
  """Random NCHW inputs with a full pixel mask, as ViltProcessor makes them."""
  import torch

  rng = np.random.default_rng(seed)
  height, width = image_size
  lengths = rng.integers(max(1, text_len // 2), text_len + 1, size=batch)
  mask = (np.arange(text_len)[None] < lengths[:, None]).astype(np.int64)
  return dict(
      input_ids=torch.from_numpy(
          rng.integers(1, vocab_size, (batch, text_len))),
      attention_mask=torch.from_numpy(mask),
      token_type_ids=torch.zeros((batch, text_len), dtype=torch.long),
      pixel_values=torch.from_numpy(
          rng.normal(size=(batch, 3, height, width)).astype(np.float32)),
      pixel_mask=torch.ones((batch, height, width), dtype=torch.long),
  )


def _timed_forward(model, inputs: dict[str, Any], device) -> Any:
  """A no-argument call that returns only once the device has finished."""
  import torch

  def call() -> None:
    with torch.no_grad():
      model(**inputs)
    if device.type == "cuda":
      torch.cuda.synchronize(device)

  return call


def interleaved(flax_call: Callable[[], Any], peer_call: Callable[[], Any],
                *, rounds: int, batch: int, repeats: int,
                min_seconds: float) -> dict[str, Any]:
  """Times the two calls in alternating rounds; the ratio per round.

  A shared machine's speed drifts over minutes; timing the Flax model and
  the peer back to back, round after round, exposes both to the same
  drift, so their ratio holds where absolute rates do not.

  Returns:
    {rounds, flax_none, eager (each {throughput, spread} over every
    round's samples), flax_none_over_eager (median of the per-round
    ratios), round_ratios}.
  """
  flax_t: list[Timing] = []
  peer_t: list[Timing] = []
  args = dict(repeats=max(1, repeats // rounds),
              min_seconds=min_seconds / rounds)
  for r in range(rounds):
    flax_t.append(time_jitted(flax_call, warmup=int(r == 0), **args))
    peer_t.append(time_jitted(peer_call, warmup=int(r == 0), **args))
  ratios = [p.median_s / f.median_s for f, p in zip(flax_t, peer_t)]
  return dict(rounds=rounds, flax_none=_summary(batch, _pooled(flax_t)),
              eager=_summary(batch, _pooled(peer_t)),
              flax_none_over_eager=statistics.median(ratios),
              round_ratios=ratios)


def _pooled(timings: list[Timing]) -> Timing:
  """One Timing from per-round ones: medians of the rounds' figures."""
  med = lambda f: statistics.median(getattr(t, f) for t in timings)
  return Timing(med("median_s"), med("p10_s"), med("p90_s"),
                sum(t.repeats for t in timings))


def _summary(batch: int, timing) -> dict[str, Any]:
  summary = throughput_summary(batch, timing)
  return dict(throughput=summary["throughput"], spread=summary["spread"])


def run_hf_peer(
    config: ViltConfig,
    *,
    text_len: int,
    image_size: tuple[int, int],
    batch: int,
    platform: str,
    repeats: int,
    warmup: int,
    min_seconds: float = 0.0,
    compile: bool = True,
    seed: int = 0,
    flax_call: Callable[[], Any] | None = None,
    rounds: int = 5,
) -> dict[str, Any]:
  """Times Hugging Face ViLT, unreduced, eager and under `torch.compile`.

  Args:
    config: the Flax model's sizes; its `dtype` picks float32 or bfloat16.
    text_len, image_size, batch: the shapes the Flax model was timed on.
    platform: JAX's platform ('cpu', 'gpu'); the peer runs on the same kind
      of device (CUDA for 'gpu'), with as many CPU threads as JAX uses.
    repeats, warmup, min_seconds: as `time_jitted`.
    compile: also time `torch.compile(model)`; a failure is recorded as
      its error string, not raised.
    seed: weights and inputs.
    flax_call: the Flax unreduced forward at the same shapes, ready to
      call; given, eager is also timed against it in `rounds` alternating
      rounds (`interleaved`), the ratio that drift does not bias.

  Returns:
    A dict: name, versions, device, dtype, batch, threads, `eager` and
    `compile` (each `{throughput, spread}`, or `{error}`, or None when not
    asked for), `interleaved` (see `interleaved`; None without `flax_call`).
  """
  import torch
  import transformers

  if platform == "gpu" and not torch.cuda.is_available():
    raise RuntimeError(
        "JAX runs on a GPU but this torch build has no CUDA, so the peer "
        "would not run on the same device; install a CUDA torch or drop "
        "--peer.")
  device = torch.device("cuda" if platform == "gpu" else "cpu")
  threads = cpu_threads()
  torch.set_num_threads(threads)
  dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[config.dtype]

  model = hf_model(config, seed).to(device=device, dtype=dtype)
  inputs = hf_inputs(batch, text_len, image_size, config.vocab_size, seed)
  inputs = {k: v.to(device) for k, v in inputs.items()}
  inputs["pixel_values"] = inputs["pixel_values"].to(dtype)

  timing_args = dict(warmup=warmup, repeats=repeats, min_seconds=min_seconds)
  eager_call = _timed_forward(model, inputs, device)
  eager = time_jitted(eager_call, **timing_args)
  rounds_report = None
  if flax_call is not None:
    rounds_report = interleaved(flax_call, eager_call, rounds=rounds,
                                batch=batch, repeats=repeats,
                                min_seconds=min_seconds)
  compiled: dict[str, Any] | None = None
  if compile:
    try:
      fast = torch.compile(model)
      timing = time_jitted(_timed_forward(fast, inputs, device),
                           **timing_args)
      compiled = _summary(batch, timing)
    except Exception as err:  # inductor needs a compiler; record and go on
      compiled = dict(error=f"{type(err).__name__}: {err}"[:2000])
  return dict(
      name="transformers.ViltForQuestionAnswering (PyTorch, unreduced)",
      versions=dict(transformers=transformers.__version__,
                    torch=torch.__version__),
      device=str(device),
      dtype=config.dtype,
      batch=batch,
      threads=threads,
      eager=_summary(batch, eager),
      compile=compiled,
      interleaved=rounds_report,
  )
