"""P1: one GRPO step of ours against one step of TRL's GRPOTrainer, same configuration.

    .venv/bin/python bench/p1_grpo_vs_trl.py [--steps 12] [--warmup 3]
        [--sizes 128x2,256x4,warm:128x2,warm:256x4] [--lrs 1e-30,5e-4]

Both sides train the same tiny model directory (char tokenizer) on the built-in `add`
task: 16 prompts x G=8 = 128 completions, 8 new tokens, temperature 1.0, no KL (beta 0),
clip 0.2/0.28, AdamW, grad clip 1, 2 torch threads. TRL runs on CPU in float32 without
gradient checkpointing, with one generation per optimisation step (generation batch =
per-device batch = 128 completions).

Two kinds of model directory, each at two sizes:
- HIDDENxLAYERS: freshly built, random init (copd.builders.tiny.build_tiny_model). It never emits
  eos, so every completion runs to the 8-token limit, and nearly every reward is 0.
- warm:HIDDENxLAYERS: the same shape after the demo's supervised warm-up
  (copd.builders.demo_base.demo_base_model, built once and cached; warm:128x2 is the demo's own base).
  It answers part of the prompts and ends its answers at eos, as a trained policy does,
  so completion lengths differ within a batch and groups with and without a reward
  signal both occur.

Each runs at two learning rates: lr 1e-30 holds the weights at their starting point (no
float32 weight moves by that little, while every step still computes the loss, the
gradient and the AdamW update), so both sides keep sampling from one distribution and do
comparable work; at lr 5e-4 one lucky reward can move a side's weights (Adam keeps moving
them for many steps after) and its completion lengths drift from the other's. The mean
lengths are printed beside every figure.

The two implementations alternate step by step inside one process: a TRL callback times
each TRL step from the end of the previous one (so data loading, generation, scoring,
update and TRL's own logging all count) and then runs our steps, which are timed
separately and excluded from TRL's interval. Medians after the warm-up steps are compared;
target: ours <= 0.5x TRL.

Ours runs twice per TRL step, from two worlds on the same model directory:
- equal work (`grpo.skip_zero_advantage=false`): every group goes through the training
  forward and backward, as in TRL. This is the headline ratio.
- as shipped (skip on): prompt groups whose rewards are all equal (zero advantage, so zero
  gradient) skip the training forward and backward; the update is the same. On a random-
  init model nearly every group scores all zero, so there this line mostly measures the
  rollout; on a warm model it shows what the skip saves at a realistic reward mix.

Work: a hook on each model's input embeddings counts the tokens fed per step, with and
without autograd. FLOPs = 2 x (matmul weights) x tokens for a forward, and 2x that again
for the backward of a gradient-carrying forward (attention scores are left out; at these
lengths they are under 1%). Printed beside the times: each side's GFLOP per step and the
GFLOP/s it reaches, which separates "does less work" from "does the work faster".
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import _common as C  # sets the offline and thread environment before torch loads

TARGET = 0.5


def our_stepper(
    model_dir: str,
    prompts: int,
    group: int,
    max_new: int,
    lr: float = 5e-4,
    skip: bool = False,
    signal: list[float] | None = None,
):
    """A one-branch world on `model_dir`, a function running one GRPO step of it, the list
    of its completion lengths and its token counter."""
    from copd.spec import RunConfig, apply_overrides
    from copd.train.algorithms.copd import phase1_step
    from copd.train.world import World

    cfg = apply_overrides(
        RunConfig(name="bench-p1"),
        [
            f"model.path={model_dir}",
            f"threads={C.THREADS}",
            f"grpo.prompts_per_step={prompts}",
            f"grpo.group_size={group}",
            f"sampling.max_new_tokens={max_new}",
            "sampling.temperature=1.0",
            "grpo.kl_coef=0",
            "grpo.clip_low=0.2",
            "grpo.clip_high=0.28",
            f"grpo.lr={lr}",
            f"grpo.skip_zero_advantage={str(skip).lower()}",
        ],
    ).validate()
    world = World.build(cfg, names=["add"])  # only the `add` policy of the (add, rev) pair
    lengths: list[float] = []

    def step() -> None:
        m = phase1_step(world)
        lengths.append(m["branch/add/response_len"])
        if signal is not None:
            signal.append(m["branch/add/signal_frac"])

    return step, lengths, TokenCounter(world.branches[0].view.module)


class TokenCounter:
    """Tokens fed through a model, split by whether autograd recorded them, and the FLOPs
    they cost: 2 x weights per token forward, 4 x weights more for a recorded token's
    backward. `weights` counts the matrices of every Linear layer (the LM head included)."""

    def __init__(self, model) -> None:
        import torch

        from copd.policy.hf_cache import hf_model

        model = hf_model(model)
        self.weights = sum(
            m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)
        )
        self.fed = {"grad": 0, "no_grad": 0}
        self.marks: list[tuple[int, int]] = []

        def hook(module, args, output):
            key = "grad" if torch.is_grad_enabled() else "no_grad"
            self.fed[key] += args[0].numel()

        model.get_input_embeddings().register_forward_hook(hook)

    def mark(self) -> None:
        """Call at each step boundary."""
        self.marks.append((self.fed["grad"], self.fed["no_grad"]))

    def gflop_per_step(self, skip: int) -> float:
        """Median over the steps after the first `skip` marks."""
        steps = [
            (g1 - g0, n1 - n0)
            for (g0, n0), (g1, n1) in zip(self.marks[skip:], self.marks[skip + 1 :], strict=False)
        ]
        return C.median([2 * self.weights * (3 * g + n) / 1e9 for g, n in steps])


def trl_trainer(model_dir: str, out_dir: str, steps: int, prompts: int, group: int, max_new: int,
                callback, lr: float = 5e-4):  # fmt: skip
    """TRL GRPOTrainer at the same configuration, `steps` optimisation steps long."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from copd.tasks import get_task

    task = get_task("add")
    examples = task.sample(random.Random(0), prompts * (steps + 2))
    data = Dataset.from_dict(
        {"prompt": [e.prompt for e in examples], "idx": list(range(len(examples)))}
    )

    def exact_match(prompts, completions, idx, **_):
        return [task.reward(examples[i], c) for i, c in zip(idx, completions, strict=True)]

    # TRL turns gradient checkpointing on by default; transformers 5 renamed the field.
    fields = GRPOConfig.__dataclass_fields__
    no_ckpt = (
        "activation_checkpointing"
        if "activation_checkpointing" in fields
        else "gradient_checkpointing"
    )
    args = GRPOConfig(
        output_dir=out_dir,
        use_cpu=True,
        bf16=False,
        **{no_ckpt: False},
        per_device_train_batch_size=prompts * group,  # counts completions
        steps_per_generation=1,  # one fresh generation per step, never reused
        num_generations=group,
        max_completion_length=max_new,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=0.0,
        epsilon=0.2,
        epsilon_high=0.28,
        num_iterations=1,
        learning_rate=lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_steps=steps,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=exact_match,
        args=args,
        train_dataset=data,
        processing_class=tok,
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)
    assert not getattr(args, no_ckpt), "TRL must run without gradient checkpointing"
    assert args.generation_batch_size == prompts * group, "one generation per step"
    return trainer


def model_for(spec: str, root: Path) -> tuple[str, str]:
    """(label, directory). HIDDENxLAYERS: a fresh random-init model, which never emits eos,
    so every completion runs to the length limit and nearly every reward is 0.
    warm:HIDDENxLAYERS: the same shape after the demo's supervised warm-up on its tasks
    (copd.builders.demo_base.demo_base_model; built once, then cached under $COPD_HOME/models; warm:128x2
    is the demo's own base). It answers part of the `add` prompts and ends its answers at
    eos, as a real policy does, so completions differ in length and groups with and
    without a reward signal both occur."""
    warm = spec.startswith("warm:")
    hidden, layers = (int(x) for x in spec.removeprefix("warm:").split("x"))
    if warm:
        from copd.builders.demo_base import demo_base_model

        return f"warm {layers}x{hidden}", str(demo_base_model(hidden=hidden, layers=layers))
    from copd.builders.tiny import build_tiny_model

    path = build_tiny_model(root / f"tiny-{hidden}x{layers}", hidden=hidden, layers=layers)
    return f"{layers}x{hidden}", str(path)


def run_size(spec: str, steps: int, warmup: int, root: Path, lr: float) -> dict:
    from transformers import TrainerCallback

    label, model_dir = model_for(spec, root)
    signal: list[float] = []  # share of groups with a reward signal, per shipped step
    ours, our_lengths, our_work = our_stepper(model_dir, 16, 8, 8, lr)
    shipped, _, shipped_work = our_stepper(model_dir, 16, 8, 8, lr, skip=True, signal=signal)
    trl_times: list[float] = []
    our_times: list[float] = []
    shipped_times: list[float] = []
    trl_work: list[TokenCounter] = []

    class Interleave(TrainerCallback):
        """Times TRL's steps end to end and runs ours between them."""

        t_last = 0.0

        def on_train_begin(self, args, state, control, model=None, **kw):
            C.set_threads()  # accelerate may have changed it; both sides run on 2 threads
            trl_work.append(TokenCounter(model))
            for w in (trl_work[0], our_work, shipped_work):
                w.mark()
            self.t_last = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            trl_times.append(time.perf_counter() - self.t_last)
            trl_work[0].mark()
            for fn, times, work in (
                (ours, our_times, our_work),
                (shipped, shipped_times, shipped_work),
            ):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
                work.mark()
            self.t_last = time.perf_counter()

    trainer = trl_trainer(
        model_dir, str(root / "trl-out"), steps + warmup, 16, 8, 8, Interleave(), lr
    )
    trainer.train()
    trl_len = [h["completions/mean_length"] for h in trainer.state.log_history if
               "completions/mean_length" in h]  # fmt: skip
    t_trl, t_ours, t_shipped = trl_times[warmup:], our_times[warmup:], shipped_times[warmup:]
    ratio = C.median(t_ours) / C.median(t_trl)
    gf_trl, gf_ours = trl_work[0].gflop_per_step(warmup), our_work.gflop_per_step(warmup)
    return {
        "model": label,
        "lr": lr,
        "trl_s": C.median(t_trl),
        "ours_s": C.median(t_ours),
        "ratio": ratio,
        "target": TARGET,
        "pass": ratio <= TARGET,
        "shipped_s": C.median(t_shipped),
        "shipped_ratio": C.median(t_shipped) / C.median(t_trl),
        "trl_gflop": gf_trl,
        "ours_gflop": gf_ours,
        "shipped_gflop": shipped_work.gflop_per_step(warmup),
        "signal_frac": sum(signal[warmup:]) / max(1, len(signal[warmup:])),
        "work_ratio": gf_ours / gf_trl,
        "trl_gflops": gf_trl / C.median(t_trl),
        "ours_gflops": gf_ours / C.median(t_ours),
        "trl_all_s": trl_times,
        "ours_all_s": our_times,
        "shipped_all_s": shipped_times,
        "trl_mean_len": sum(trl_len) / max(1, len(trl_len)),
        "ours_mean_len": sum(our_lengths[warmup:]) / max(1, len(our_lengths[warmup:])),
        "load": C.load_avg(),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12, help="timed steps per side (>= 10)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument(
        "--sizes",
        default="128x2,256x4,warm:128x2,warm:256x4",
        help="HIDDENxLAYERS (random init) or warm:HIDDENxLAYERS (after the demo's warm-up; "
        "built once and cached), comma-separated",
    )
    ap.add_argument(
        "--lrs",
        default="1e-30,5e-4",
        help="learning rates, each a full comparison. 1e-30 holds the weights at their "
        "initialisation (every step still computes the gradient and runs AdamW), so both "
        "sides sample from the same distribution throughout; with a positive rate a rare "
        "lucky reward moves the weights and the completion lengths drift apart.",
    )
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    C.set_threads()
    import torch
    import trl

    print("P1  GRPO step: ours vs TRL GRPOTrainer (16 prompts x G=8, 8 new tokens, T=1, beta 0)")
    print(C.machine_line() + f", trl {trl.__version__}")
    results = []
    with tempfile.TemporaryDirectory(prefix="copd-p1-") as tmp:
        for spec, lr in [(s, float(x)) for x in a.lrs.split(",") for s in a.sizes.split(",")]:
            torch.manual_seed(0)
            r = run_size(spec, a.steps, a.warmup, Path(tmp), lr)
            results.append(r)
            print(
                f"  {r['model']:>10} lr {lr:g}  TRL {r['trl_s'] * 1e3:7.1f} ms  ours {r['ours_s'] * 1e3:7.1f} ms"
                f"  ratio {r['ratio']:.2f} (target <= {TARGET})  {C.verdict(r['ratio'], TARGET)}"
                f"  | mean completion len TRL {r['trl_mean_len']:.1f} ours {r['ours_mean_len']:.1f}"
            )
            print(f"          TRL  {C.spread(r['trl_all_s'][a.warmup :])}")
            print(f"          ours {C.spread(r['ours_all_s'][a.warmup :])}")
            print(
                f"          work per step: TRL {r['trl_gflop']:.1f} GFLOP at {r['trl_gflops']:.0f} GFLOP/s,"
                f" ours {r['ours_gflop']:.1f} GFLOP at {r['ours_gflops']:.0f} GFLOP/s"
                f" (work ratio {r['work_ratio']:.2f})"
            )
            print(
                f"          as shipped (zero-advantage groups skipped): {r['shipped_s'] * 1e3:.1f} ms,"
                f" ratio {r['shipped_ratio']:.2f}, {r['shipped_gflop']:.1f} GFLOP per step;"
                f" {r['signal_frac']:.0%} of groups carried a reward signal"
            )
            print(f"          {C.load_line()}")
    out = {"bench": "p1", "machine": C.machine(), "results": results}
    C.write_json(a.json, out)
    return out


if __name__ == "__main__":
    main()
