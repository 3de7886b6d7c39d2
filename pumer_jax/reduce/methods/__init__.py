"""The built-in token-reduction methods, one module each, registered on import.

Each module defines one `ReduceConfig` subclass and registers it; this list
is the registry's list of built-ins. A user's method registers itself the
same way from its own file (`pumer_jax.reduce.register`).
"""

from pumer_jax.reduce.methods import dynamicvit, evit, none, pumer, smres, tome

__all__ = ["dynamicvit", "evit", "none", "pumer", "smres", "tome"]
