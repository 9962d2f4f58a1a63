"""Allowed values of the config's closed fields, each set written once.

The `Literal` annotates the dataclass field (JSON loading and the dashboard's form read its
choices from the type); the tuple derived from it is what validation and other modules
check against and print.
"""

from __future__ import annotations

from typing import Literal, get_args

Method = Literal["copd", "expert", "mixed", "sequential", "static_opd", "mopd", "weight_average"]
Dtype = Literal["float32", "bfloat16", "float16"]
BranchKind = Literal["full", "lora"]
SamplingEngine = Literal["hf", "vllm"]
LossAgg = Literal["token_mean", "seq_mean_token_mean", "dr_grpo"]
Teacher = Literal["live", "snapshot"]
TopologyKind = Literal["pair", "hub", "full"]
MergeMethod = Literal["average", "weighted", "task_arithmetic", "ties"]
BackendKind = Literal["local", "ray"]
# How phase-II OPD terms are weighted: cross_weight per teacher (Algorithm 1 read as a sum)
# or cross_weight / (number of teachers) each (the mean; the default).
TeacherWeighting = Literal["mean", "per_teacher"]
# The OPD advantage: the paper's sampled-token log-ratio through the clipped surrogate, or
# a direct loss: the full-vocabulary reverse KL, or the reverse KL over the teacher's top-k.
OPDAdvantage = Literal["sampled", "full_kl", "topk"]
# Whose samples a distilled student learns from: its own (on-policy distillation), or the
# teacher's greedy answers (supervised, sequence-level distillation: the channel's
# ceiling in the calibration of experiments/calibrate.py; MOPD only).
OPDSamples = Literal["student", "teacher"]
# Mixed GRPO's budget: the experts' combined K x T updates of `prompts_per_step` prompts,
# or T updates (one CoPD branch's optimizer steps) of K x `prompts_per_step` prompts.
MixedSteps = Literal["combined", "per_branch"]
# Experiment trackers a run also reports to (`report_to`, the name TRL uses); each is an
# optional extra: `pip install 'copd[tensorboard]'` (copd/train/trackers.py).
Tracker = Literal["trackio", "tensorboard", "wandb", "mlflow"]

METHODS: tuple[str, ...] = get_args(Method)
DTYPES: tuple[str, ...] = get_args(Dtype)
BRANCH_KINDS: tuple[str, ...] = get_args(BranchKind)
SAMPLING_ENGINES: tuple[str, ...] = get_args(SamplingEngine)
LOSS_AGGS: tuple[str, ...] = get_args(LossAgg)
TEACHERS: tuple[str, ...] = get_args(Teacher)
TOPOLOGIES: tuple[str, ...] = get_args(TopologyKind)
MERGE_METHODS: tuple[str, ...] = get_args(MergeMethod)
BACKEND_KINDS: tuple[str, ...] = get_args(BackendKind)
TEACHER_WEIGHTINGS: tuple[str, ...] = get_args(TeacherWeighting)
OPD_ADVANTAGES: tuple[str, ...] = get_args(OPDAdvantage)
OPD_SAMPLES: tuple[str, ...] = get_args(OPDSamples)
MIXED_STEPS: tuple[str, ...] = get_args(MixedSteps)
TRACKERS: tuple[str, ...] = get_args(Tracker)
