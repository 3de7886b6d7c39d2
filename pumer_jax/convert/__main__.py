"""`python -m pumer_jax.convert`: see `pumer_jax.convert.cli`."""

from pumer_jax.convert.cli import main

if __name__ == "__main__":
  main()
