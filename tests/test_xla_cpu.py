"""The XLA:CPU defaults the entry points set: added only where the user has
not chosen, only for flags this jaxlib knows, never after JAX started."""

import subprocess
import sys

import pytest

from pumer_jax import xla_cpu

FLAG = xla_cpu.FAST_CPU_FLAGS[0]


@pytest.fixture
def fresh(monkeypatch):
  """As in a process whose JAX backends have not started yet."""
  monkeypatch.setattr(xla_cpu, "_backends_started", lambda: False)
  monkeypatch.setattr(xla_cpu, "_jaxlib_knows", lambda name: True)


def test_adds_the_flags_after_the_users(fresh):
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  assert xla_cpu.apply_fast_defaults(env) == [FLAG]
  assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {FLAG}"


def test_a_users_own_setting_wins(fresh):
  env = {"XLA_FLAGS": f"--{xla_cpu.YNN_FLAG_NAME}=dot"}
  assert xla_cpu.apply_fast_defaults(env) == []
  assert env["XLA_FLAGS"] == f"--{xla_cpu.YNN_FLAG_NAME}=dot"


def test_opt_out_leaves_xla_alone(fresh):
  env = {xla_cpu.OPT_OUT: "0"}
  assert xla_cpu.apply_fast_defaults(env) == []
  assert "XLA_FLAGS" not in env


def test_flags_unknown_to_jaxlib_are_not_set(monkeypatch):
  # XLA aborts the process on an unknown flag, so none may be guessed.
  monkeypatch.setattr(xla_cpu, "_backends_started", lambda: False)
  assert not xla_cpu._jaxlib_knows("xla_cpu_no_such_flag_in_any_jaxlib")
  monkeypatch.setattr(xla_cpu, "FAST_CPU_FLAGS",
                      ("--xla_cpu_no_such_flag_in_any_jaxlib=1",))
  env = {}
  assert xla_cpu.apply_fast_defaults(env) == []
  assert env == {}


def test_nothing_changes_once_jax_has_started():
  import jax
  jax.devices()  # this test process's backends are up
  env = {}
  assert xla_cpu.apply_fast_defaults(env) == []
  assert env == {}


def test_a_fresh_process_compiles_with_the_flag():
  # End to end in a new interpreter: the flag reaches XLA (no YNNPACK
  # fusion in the compiled program) and jaxlib accepts it.
  code = (
      "import os, jax, jax.numpy as jnp\n"
      "from pumer_jax import xla_cpu\n"
      "os.environ.pop('XLA_FLAGS', None)\n"
      "added = xla_cpu.apply_fast_defaults()\n"
      "x = jnp.ones((64, 64))\n"
      "text = jax.jit(lambda a: jax.nn.softmax(a @ a)).lower(x).compile()"
      ".as_text()\n"
      "print(bool(added), 'ynn_fusion' in text)\n")
  out = subprocess.run([sys.executable, "-c", code], check=True,
                       capture_output=True, text=True).stdout.split()
  if out[0] == "False":
    pytest.skip("this jaxlib has no YNNPACK fusion flag")
  assert out == ["True", "False"]
