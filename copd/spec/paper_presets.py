"""Presets for GPU users: CoPD on two real text datasets with a real instruction model.

The paper's text setting, scaled to one node: two branches, each running GRPO on its own
verifiable dataset, co-evolving through mutual on-policy distillation, merged at the end.
Model and data are local files given with --set (nothing is downloaded):

    copd train paper-text-math \\
        --set model.path=/models/Qwen2.5-1.5B-Instruct \\
        --set 'task_options.dataset#math.path=/data/math_train.jsonl' \\
        --set 'task_options.dataset#mcq.path=/data/mathqa_train.jsonl'

Rows are JSON objects; the math branch reads `problem` / `answer` (checked by math-verify:
boxed answers, fractions, LaTeX), the multiple-choice branch reads `question` / `answer`
(a letter A-J). Change the columns with `task_options.dataset#math.prompt_field=...`, a
separate test file with `...eval_path=...`. A complete config file for GSM8K + MathQA is
docs/examples/gsm8k_mathqa.json.

`paper-text-math` trains full-weight branches, one per GPU (`device: auto`);
`paper-text-math-lora` keeps one shared base with a LoRA adapter per branch on one GPU.
`paper-vl-image` / `paper-vl-video`: the multimodal setting on a local vision-language
model (see the section at the end of this file).

These are the factories; copd/spec/presets.py lists them by name with their descriptions.
"""

from __future__ import annotations

from dataclasses import replace

from copd.spec import (
    BranchSpec,
    DiagnosticsConfig,
    EvalConfig,
    GRPOConfig,
    LoraSpec,
    ModelConfig,
    OPDConfig,
    RunConfig,
    SamplingConfig,
    ScheduleConfig,
    TopologyConfig,
)

MATH_TEMPLATE = (
    "{prompt}\n\nPlease reason step by step, and put your final answer within \\boxed{}."
)
MCQ_TEMPLATE = (
    "{prompt}\n\nThink it through, then end with 'Answer: X' where X is the letter of the "
    "correct option."
)


def text_task_options(math_path: str, mcq_path: str) -> dict[str, dict]:
    """`task_options` for the two dataset branches (see copd/tasks/datasets.py)."""
    return {
        "dataset#math": {
            "path": math_path,
            "name": "math",
            "prompt_field": "problem",
            "answer_field": "answer",
            "verifier": "math",
            "prompt_template": MATH_TEMPLATE,
            "eval_fraction": 0.05,
        },
        "dataset#mcq": {
            "path": mcq_path,
            "name": "mcq",
            "prompt_field": "question",
            "answer_field": "answer",
            "verifier": "choice",
            "prompt_template": MCQ_TEMPLATE,
            "eval_fraction": 0.05,
        },
    }


def paper_text_math(lora: bool = False) -> RunConfig:
    """CoPD, 2 real-data branches (math, multiple choice), paper hyper-parameters."""
    return RunConfig(
        name="paper-text-math" + ("-lora" if lora else ""),
        method="copd",
        model=ModelConfig(
            path="/path/to/instruct-model",  # --set model.path=<a local HF model directory>
            dtype="bfloat16",
            branch_kind="lora" if lora else "full",
            lora=LoraSpec(r=32, alpha=64),
        ),
        # Paper: temperature 1.0, G=8, clip 0.2/0.28, no KL, constant lr.
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=1024),
        # 16 rows per forward/backward (gradient accumulation): `copd plan` puts one pass over
        # a phase-II update (32 x 8 native + 16 x 4 cross rows) far beyond one GPU's memory.
        grpo=GRPOConfig(
            group_size=8, prompts_per_step=32, lr=2e-5 if lora else 1e-6, micro_batch_rows=16
        ),
        opd=OPDConfig(cross_prompts_per_step=16, cross_group_size=4),
        schedule=ScheduleConfig(
            cycles=8, rl_steps=15, opd_steps=10, diag_every=5, eval_every_cycles=2
        ),
        branches=(
            BranchSpec("math", "dataset#math", device="cuda:0" if lora else "auto"),
            BranchSpec("mcq", "dataset#mcq", device="cuda:0" if lora else "auto"),
        ),
        eval=EvalConfig(n_prompts=500, greedy=True),
        diagnostics=DiagnosticsConfig(top_k=10, extra_k=(1, 5), n_prompts=32),
        task_options=text_task_options("/path/to/math_train.jsonl", "/path/to/mcq_train.jsonl"),
        checkpoint_every=25,
    )


# ----------------------------------------------------------------------------- multimodal
# The paper's multimodal setting: one vision-language base (Qwen2-VL / Qwen2.5-VL / Qwen3-VL
# family, a local directory; its processor needs torchvision) with a text branch, an image
# branch and, optionally, a video branch; the text branch is the hub that every modality
# distils with. Image/video rows carry file paths (opened when a prompt is encoded):
#
#   copd train paper-vl-image --set model.path=/models/Qwen2-VL-7B-Instruct \
#       --set 'task_options.dataset#math.path=/data/math_train.jsonl' \
#       --set 'task_options.dataset#image.path=/data/geo_vqa_train.jsonl'
#
# The image rows read `question` / `answer` / `image` (a path, relative to the file, or a
# list of paths); the video rows `question` / `answer` / `video`: a video file (needs PyAV:
# pip install -e .[video]), a directory of frame images, or a list of frame paths; each
# video is read as `max_frames` evenly spaced frames (--set
# 'task_options.dataset#video.max_frames=16'). Answers are checked by math-verify.
# Text-only prompts on the VLM take the plain text path.
def media_task_options(
    image_path: str, video_path: str | None = None, max_frames: int = 8
) -> dict[str, dict]:
    """`task_options` for the image (and video) dataset branches."""
    common = {"prompt_field": "question", "answer_field": "answer", "verifier": "math",
              "prompt_template": MATH_TEMPLATE, "eval_fraction": 0.05}  # fmt: skip
    out = {"dataset#image": {"path": image_path, "name": "image", "image_field": "image", **common}}
    if video_path is not None:
        out["dataset#video"] = {
            "path": video_path, "name": "video", "video_field": "video",
            "max_frames": max_frames, **common,
        }  # fmt: skip
    return out


def paper_vl(video: bool = False) -> RunConfig:
    """CoPD on one VLM: text + image branches (pair), or text + image + video (text hub)."""
    base = paper_text_math()
    branches = [
        BranchSpec("text", "dataset#math", device="auto"),
        BranchSpec("image", "dataset#image", device="auto"),
    ]
    if video:
        branches.append(BranchSpec("video", "dataset#video", device="auto"))
    text_opts = {"dataset#math": text_task_options("/path/to/math_train.jsonl", "")["dataset#math"]}
    media = media_task_options(
        "/path/to/image_train.jsonl", "/path/to/video_train.jsonl" if video else None
    )
    return replace(
        base,
        name="paper-vl-video" if video else "paper-vl-image",
        model=replace(base.model, path="/path/to/Qwen2-VL-Instruct"),
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=1024),
        branches=tuple(branches),
        topology=TopologyConfig(kind="hub", hub="text") if video else base.topology,
        task_options={**text_opts, **media},
    )


# ----------------------------------------------------------------------------- reasoning-gym
# Two procedural reasoning-gym domains (pip install -e .[rg]; nothing to download) on a
# local instruction model, LoRA branches on one GPU; answers inside <answer> tags, scored
# by each dataset's own verifier (copd/tasks/reasoning_gym.py):
#
#   copd train paper-rg-lora --set model.path=/models/Qwen2.5-1.5B-Instruct
#   copd plan --model /models/Qwen2.5-1.5B-Instruct --lora --lora-rank 32 --prompts 8 \
#       --samples 8 --cross-prompts 4 --cross-samples 4 --prompt-len 160 --completion-len 256
#
# The engine trains a branch's whole batch in one forward and backward, so activations
# dominate: by that plan a 0.5B model fits one 80 GiB GPU, a 1.5B model one 141 GiB GPU.
RG_ARITH = "rg:basic_arithmetic?min_terms=2&max_terms=4&min_digits=1&max_digits=3"
RG_LEGS = "rg:leg_counting?min_animals=2&max_animals=5"


def paper_rg_lora() -> RunConfig:
    """CoPD with LoRA branches on two reasoning-gym domains (arithmetic, leg counting)."""
    base = paper_text_math(lora=True)
    return replace(
        base,
        name="paper-rg-lora",
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=256),
        grpo=replace(base.grpo, prompts_per_step=8, micro_batch_rows=16),
        opd=OPDConfig(cross_prompts_per_step=4, cross_group_size=4),
        schedule=ScheduleConfig(
            cycles=4, rl_steps=6, opd_steps=4, diag_every=5, eval_every_cycles=2
        ),
        branches=(
            BranchSpec("arith", RG_ARITH, device="cuda:0"),
            BranchSpec("legs", RG_LEGS, device="cuda:0"),
        ),
        eval=EvalConfig(n_prompts=200, greedy=True),
        task_options={},
    )
