"""Allowed values of the config's closed fields, each set written once.

The `Literal` annotates the dataclass field (JSON loading and the dashboard's form read its
choices from the type); the tuple derived from it is what validation and other modules
check against and print.
"""

from __future__ import annotations

from typing import Literal, get_args

Method = Literal["copd", "expert", "mixed", "static_opd", "mopd", "weight_average"]
Dtype = Literal["float32", "bfloat16", "float16"]
BranchKind = Literal["full", "lora"]
SamplingEngine = Literal["hf", "vllm"]
LossAgg = Literal["token_mean", "seq_mean_token_mean", "dr_grpo"]
Teacher = Literal["live", "snapshot"]
TopologyKind = Literal["pair", "hub", "full"]
MergeMethod = Literal["average", "weighted", "task_arithmetic", "ties"]
BackendKind = Literal["local", "ray"]

METHODS: tuple[str, ...] = get_args(Method)
DTYPES: tuple[str, ...] = get_args(Dtype)
BRANCH_KINDS: tuple[str, ...] = get_args(BranchKind)
SAMPLING_ENGINES: tuple[str, ...] = get_args(SamplingEngine)
LOSS_AGGS: tuple[str, ...] = get_args(LossAgg)
TEACHERS: tuple[str, ...] = get_args(Teacher)
TOPOLOGIES: tuple[str, ...] = get_args(TopologyKind)
MERGE_METHODS: tuple[str, ...] = get_args(MergeMethod)
BACKEND_KINDS: tuple[str, ...] = get_args(BackendKind)
