"""Typed, frozen run configuration for CoPD and its baselines.

One `RunConfig` describes a whole run: the base model, the branches (one per domain),
sampling, GRPO, on-policy distillation (OPD), the cycle schedule, the topology of the
mutual-OPD graph, the final merge, evaluation and diagnostics. Defaults follow the paper
(arXiv 2604.27083) wherever it gives a value; what it leaves open is a documented field.

    cfg = RunConfig.from_file(path)                     # or presets.get("demo")
    cfg = apply_overrides(cfg, ["grpo.group_size=8"])   # --set on the command line
    cfg.validate()                                      # raises ConfigError naming field + fix

Paper values: G=8, temperature 1.0, clip 0.2/0.28, no reference KL, S_RL:S_OPD = 1.5:1,
top-k overlap k=10, constant learning rate. Open in the paper (our defaults documented on
each field): beta, the number of cycles N, the native/cross split of a phase-II batch,
merge weights, live vs frozen teacher.

Modules: `sections` (the dataclasses; each section checks itself), `run` (RunConfig:
`validate` adds the cross-field rules; files), `choices` (allowed values, each set once), `errors`
(ConfigError), `serialize` (dicts <-> dataclasses), `overrides` (--set, diffs, nested
replace, seed lists).
"""

from copd.errors import ConfigError
from copd.spec.choices import (
    BACKEND_KINDS,
    BRANCH_KINDS,
    DTYPES,
    LOSS_AGGS,
    MERGE_METHODS,
    METHODS,
    SAMPLING_ENGINES,
    TEACHERS,
    TOPOLOGIES,
)
from copd.spec.methods import METHOD_TABLE, MethodInfo, has_teachers, method_info, method_label
from copd.spec.overrides import (
    apply_overrides,
    config_diff,
    field_docs,
    parse_seeds,
    replace_in,
)
from copd.spec.run import OWN_DOMAIN, RunConfig, reported_model_of
from copd.spec.runtime import (
    BackendConfig,
    BenchmarkSpec,
    DiagnosticsConfig,
    EvalConfig,
)
from copd.spec.sections import (
    BranchSpec,
    GRPOConfig,
    LoraSpec,
    MergeConfig,
    ModelConfig,
    OPDConfig,
    SamplingConfig,
    ScheduleConfig,
    TopologyConfig,
)

__all__ = [
    "METHOD_TABLE",
    "MethodInfo",
    "has_teachers",
    "method_info",
    "method_label",
    "OWN_DOMAIN",
    "reported_model_of",
    "BACKEND_KINDS",
    "BRANCH_KINDS",
    "DTYPES",
    "LOSS_AGGS",
    "MERGE_METHODS",
    "METHODS",
    "SAMPLING_ENGINES",
    "TEACHERS",
    "TOPOLOGIES",
    "BackendConfig",
    "BenchmarkSpec",
    "BranchSpec",
    "ConfigError",
    "DiagnosticsConfig",
    "EvalConfig",
    "GRPOConfig",
    "LoraSpec",
    "MergeConfig",
    "ModelConfig",
    "OPDConfig",
    "RunConfig",
    "SamplingConfig",
    "ScheduleConfig",
    "TopologyConfig",
    "apply_overrides",
    "config_diff",
    "field_docs",
    "parse_seeds",
    "replace_in",
]
