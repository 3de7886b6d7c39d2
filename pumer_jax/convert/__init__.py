"""Weight import, one module per source; `python -m pumer_jax.convert`.

- `vilt_hf`: Hugging Face ViLT (`vilt_from_hf`).
- `meter_hf`: METER's encoders from Hugging Face CLIP and RoBERTa
  (`meter_from_hf`), the fusion fresh.
- `meter_official`: official METER checkpoints (`meter_from_official`).
- `mapping`: the table machinery they share; `cli`: the command line. `cli`: the command line.
"""

from pumer_jax.convert.mapping import fit_to_model, load_state_dict, map_state_dict
from pumer_jax.convert.meter_hf import meter_from_hf
from pumer_jax.convert.meter_official import (
    load_official_state_dict,
    meter_from_official,
    official_meter_config,
)
from pumer_jax.convert.vilt_hf import vilt_from_hf

__all__ = [
    "fit_to_model",
    "load_official_state_dict",
    "load_state_dict",
    "map_state_dict",
    "meter_from_hf",
    "meter_from_official",
    "official_meter_config",
    "vilt_from_hf",
]
