"""`python -m pumer_jax.bench`: see `pumer_jax.bench.cli`."""

from pumer_jax.bench.cli import main

if __name__ == "__main__":
  main()
