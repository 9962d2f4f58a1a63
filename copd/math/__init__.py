"""Pure tensor math, no model and no training state: GRPO advantages and the clipped
surrogate (`losses`), the overlap and divergence diagnostics (`diagnostics`), merging state
dicts (`merge`) and the cycle schedule (`schedule`). A new OPD loss variant's formula goes
in `losses`; its use in an update goes in copd/train/terms.py."""
