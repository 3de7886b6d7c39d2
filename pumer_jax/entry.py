"""What the entry points share: train.py's and eval.py's flags and process
set-up, and the command line of the benchmark scripts."""

from __future__ import annotations

import argparse
import ast
import os
from collections.abc import Callable
from typing import Any

from absl import app, flags, logging
from ml_collections import config_flags
import jax

from pumer_jax import xla_cpu
from pumer_jax.configs.base import load_config


# A plain cluster (or one machine's localhost): each process is told the
# coordinator, the process count and its own id in the environment.
DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                   "JAX_PROCESS_ID")


def initialize_distributed() -> None:
  """`jax.distributed.initialize()`, before anything touches a device.

  With the three `DISTRIBUTED_ENV` variables set, they name the
  coordinator, the number of processes and this process's id; without
  them, JAX detects the cluster itself (SLURM, Cloud TPU, ...). On CPU,
  cross-process collectives go through gloo.
  """
  values = {k: os.environ.get(k) for k in DISTRIBUTED_ENV}
  given = [k for k, v in values.items() if v]
  if given and len(given) != len(DISTRIBUTED_ENV):
    missing = sorted(set(DISTRIBUTED_ENV) - set(given))
    raise ValueError(
        f"--multihost: {given} are set but {missing} are not; set all three "
        "(JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES=N, "
        "JAX_PROCESS_ID=0..N-1), or none on a cluster JAX detects itself.")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if not given:
    jax.distributed.initialize()
    return
  jax.distributed.initialize(
      coordinator_address=values["JAX_COORDINATOR_ADDRESS"],
      num_processes=int(values["JAX_NUM_PROCESSES"]),
      process_id=int(values["JAX_PROCESS_ID"]))


def run(body: Callable[[Any, str], Any]) -> None:
  """Defines --config/--workdir/--multihost and runs `body(config, workdir)`.

  --multihost calls `initialize_distributed()` first (the coordinator comes
  from the environment), so the mesh spans every host.
  """
  config = config_flags.DEFINE_config_file(
      "config", None, "Config file (a get_config(arg) module).",
      lock_config=True)
  workdir = flags.DEFINE_string("workdir", None, "Run directory.")
  multihost = flags.DEFINE_bool(
      "multihost", False, "Call jax.distributed.initialize() first.")
  flags.mark_flags_as_required(["config", "workdir"])

  def main(argv):
    del argv
    xla_cpu.apply_fast_defaults()
    logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
    if multihost.value:
      initialize_distributed()
    body(config.value, workdir.value)

  app.run(main, flags_parser=_parse_flags)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a hint where a `--config.reduce.KEY`
  override names a key the config's reducer does not take: each method's
  block holds its own fields only."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError) as error:
    reduce_keys = [a.split("=")[0] for a in argv[1:]
                   if a.startswith("--config.reduce.")]
    if reduce_keys and "Error whilst parsing config" not in str(error):
      raise ValueError(
          f"{error}\n{', '.join(reduce_keys)}: config.reduce holds the keys "
          "of its method only (reduce.method and that method's fields). "
          "Choose the method with the config's variant first (e.g. "
          "--config=configs/vilt_shapes.py:method=pumer), then set its "
          "keys.") from error
    raise


def script_parser(description: str, *, config: bool = True
                  ) -> argparse.ArgumentParser:
  """The command line every benchmark script shares: argparse flags, and
  (with `config`) `--config FILE:VARIANT` with `--set KEY=VALUE` overrides
  of its keys (repeatable; values read as Python literals, else strings)."""
  parser = argparse.ArgumentParser(description=description)
  if config:
    parser.add_argument("--config", required=True,
                        help="a config file and variant, e.g. "
                        "configs/vilt_shapes.py:pretrain")
    parser.add_argument("--set", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config key, e.g. --set "
                        "data.data_dir=runs/data")
  return parser


def script_config(args: argparse.Namespace):
  """The script's config: `--config`'s `get_config`, then every `--set`."""
  config = load_config(args.config)
  for item in args.set:
    key, sep, raw = item.partition("=")
    if not sep:
      raise ValueError(f"--set {item!r} must be KEY=VALUE.")
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    *path, last = key.split(".")
    node = config
    for part in path:
      node = node[part]
    if last not in node:
      raise ValueError(f"--set {key}: the config has no key {last!r} "
                       f"there; it has {sorted(node)}.")
    node[last] = value
  return config


def script_setup() -> None:
  """What a script does before touching a device: the project's XLA:CPU
  defaults, and library loggers kept to warnings."""
  xla_cpu.apply_fast_defaults()
  logging.set_verbosity(logging.WARNING)
