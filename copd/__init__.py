"""copd: Co-Evolving Policy Distillation (arXiv 2604.27083) and its baselines.

The library holds the algorithm (config, models, tasks, rollouts, losses, diagnostics,
merge, evaluation, checkpoints, CLI). It imports neither Streamlit nor SQL; the run store
is wired in at one place, the composition root `copd.runner`.
"""

__version__ = "0.1.0"
