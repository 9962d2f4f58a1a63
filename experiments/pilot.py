"""Pilot study (paper Fig. 2a/b): does a student's top-k overlap with a teacher predict how
much on-policy distillation (OPD) from that teacher helps it?

    copd pilot                                     # teacher = rev expert, 5 students, seed 0
    copd pilot --temperatures 0.5,1.0,1.6 --seeds 0,1 --db sqlite:///runs.db --group pilot-a

Protocol (the paper's, on the built-in domains):
1. Teacher: an expert trained from the base by GRPO on the teacher's domain (`rev` by
   default) for `schedule.total_steps()` updates, then frozen.
2. Students at different overlap levels: each starts from the base and makes
   `student_steps` GRPO updates on the student's domain (`add` by default, like a CoPD
   branch of the other domain) at sampling temperature T, one student per T. Every student
   sees the same prompt and sampling streams; only T differs.
3. Overlap O_k (k = `diagnostics.top_k`, 10) of each student with the teacher, on the
   student's own T=1 rollouts of a fixed probe set of the teacher's prompts; also the
   symmetric KL.
4. Distillation with the same budget for every student: `opd_steps` updates, each the
   student's own samples of the teacher's prompts scored by the frozen teacher (token
   advantage beta * (log p_T - log p_S)); pure OPD by default, `--native-rl` adds the
   student's native GRPO batch to each update (CoPD's phase-II form).
5. Gain = accuracy on the teacher's domain after minus before distillation (greedy,
   held-out split). Report: gain vs overlap, a least-squares line, Pearson r, N and a
   p-value (a permutation test: exact for N <= 8, else sampled).

Outputs: `<out>/pilot.json`, `<out>/pilot.png` (plotly + kaleido when available), and with
`--db` one run per seed (method "pilot") with metrics `pilot/overlap`, `pilot/gain`, ...
at step = student index, so the dashboard's Studies page can draw it.

Caveat (as in the paper): temperature changes more than overlap (how much the student
learned on its own domain, its entropy), so the correlation is not a controlled effect.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from copd.common.stats import Fit, fit_line, pearson, permutation_p  # noqa: F401  (re-exported)
from copd.runner import recorded
from copd.spec import RunConfig, apply_overrides, presets


# ---------------------------------------------------------------------- measurement
def overlap_with(world, student_view, teacher_view, examples, seed: int) -> dict[str, float]:
    """Diagnostics of a student against a teacher on the student's own T=1 rollouts of
    `examples` (overlap_top{k}, sym_kl, ...), with a fixed sampling stream."""
    import torch

    with torch.inference_mode():
        from copd.math.diagnostics import pair_diagnostics
        from copd.policy.decoding import Decoding
        from copd.policy.rollout import completion_logits, sample_rollouts

        d = world.cfg.diagnostics
        with student_view.use() as model:
            batch = sample_rollouts(
                model,
                world.tokenizer,
                examples,
                Decoding(temperature=1.0, max_new_tokens=world.decoding.max_new_tokens),
                group_size=d.samples_per_prompt,
                generator=torch.Generator().manual_seed(seed),
                device=student_view.device,
            )
            s_logits = completion_logits(model, batch).float()
        with teacher_view.use() as model:
            t_logits = completion_logits(model, batch).float()
        valid = batch.completion_mask_B_T.bool()
        return pair_diagnostics(s_logits[valid], t_logits[valid], sorted({d.top_k, *d.extra_k}))


@dataclass
class PilotPoint:
    seed: int
    temperature: float
    overlap: float  # O_k with the teacher, k = diagnostics.top_k
    sym_kl: float
    pre: float  # student accuracy on the teacher's domain before OPD
    post: float  # ... after OPD
    gain: float  # post - pre
    teacher_acc: float
    student_own_acc: float  # student accuracy on its own domain before OPD


def pilot_config(
    overrides: Sequence[str], seed: int, teacher_task: str, student_task: str, native_rl: bool
) -> RunConfig:
    cfg = apply_overrides(presets.get("expert"), list(overrides))
    data = {
        **cfg.to_dict(),
        "name": f"pilot-s{seed}",
        "seed": seed,
        "branches": [
            {"name": "teacher", "task": teacher_task},
            {"name": "student", "task": student_task},
        ],
    }
    cfg = RunConfig.from_dict(data)
    cfg = replace(cfg, opd=replace(cfg.opd, native_rl=native_rl))
    return cfg.validate()


def run_seed(
    cfg: RunConfig,
    temperatures: Sequence[float],
    student_steps: int,
    opd_steps: int,
    n_probe: int,
    logger=None,
    log: Callable[[str], None] = print,
) -> list[PilotPoint]:
    """One teacher, then one student per temperature (see the module docstring)."""
    import torch

    from copd.train.algorithms.expert import rl_step
    from copd.train.algorithms.static_opd import distill_step
    from copd.train.evaluate import evaluate
    from copd.train.world import World

    world = World.build(cfg, logger)
    teacher, student = world.branch("teacher"), world.branch("student")
    t_task, s_task = teacher.task.name, student.task.name
    base_state = student.trainable_state()
    for _ in range(cfg.schedule.total_steps()):
        rl_step(world, [teacher])
    teacher.view.module.requires_grad_(False)
    teacher_acc = evaluate(world, {"t": teacher.view}, 0, log=False)["t"][t_task]
    log(f"[pilot s{cfg.seed}] teacher ({t_task} expert) accuracy {teacher_acc:.3f}")
    probe = teacher.task.sample(random.Random(f"pilot-probe:{cfg.seed}"), n_probe)
    k = cfg.diagnostics.top_k
    points = []
    for i, temp in enumerate(temperatures):
        student.load_trainable_state(base_state)
        student.optimizer = torch.optim.AdamW(
            student.params, lr=cfg.grpo.lr, weight_decay=cfg.grpo.weight_decay
        )
        world.rngs["student"] = random.Random(f"{cfg.seed}:pilot-student")
        world.gen = torch.Generator().manual_seed(cfg.seed * 1009 + 1)
        world.reconfigure(replace(cfg, sampling=replace(cfg.sampling, temperature=temp)))
        for _ in range(student_steps):
            rl_step(world, [student])
        world.reconfigure(cfg)  # distillation and measurement at the run's own temperature
        diag = overlap_with(world, student.view, teacher.view, probe, seed=cfg.seed)
        pre_scores = evaluate(world, {"s": student.view}, 0, log=False)["s"]
        for _ in range(opd_steps):
            distill_step(world, student, teacher)
        post = evaluate(world, {"s": student.view}, 0, log=False)["s"][t_task]
        pt = PilotPoint(
            cfg.seed, temp, diag[f"overlap_top{k}"], diag["sym_kl"], pre_scores[t_task], post,
            post - pre_scores[t_task], teacher_acc, pre_scores[s_task],
        )  # fmt: skip
        points.append(pt)
        log(
            f"[pilot s{cfg.seed}] T={temp}: O_{k}={pt.overlap:.3f} pre {pt.pre:.3f} "
            f"post {pt.post:.3f} gain {pt.gain:+.3f}"
        )
        if logger is not None:
            logger.log_metrics(
                {f"pilot/{f}": float(v) for f, v in asdict(pt).items() if f != "seed"},
                step=i,
                phase="opd",
            )
    return points


def run_pilot(
    temperatures: Sequence[float] = (0.5, 0.8, 1.0, 1.3, 1.6),
    seeds: Sequence[int] = (0,),
    overrides: Sequence[str] = (),
    out: str | Path = "runs/pilot",
    db: str | None = None,
    group: str | None = "pilot",
    teacher_task: str = "rev",
    student_task: str = "add",
    student_steps: int = 20,
    opd_steps: int = 20,
    n_probe: int = 64,
    native_rl: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the pilot for every seed; write pilot.json (+ pilot.png); return the payload."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    points: list[PilotPoint] = []
    cfg = None
    for seed in seeds:
        cfg = pilot_config(overrides, seed, teacher_task, student_task, native_rl)
        cfg = replace(cfg, group=group)
        run_dir = out / "runs" / f"{cfg.name}-s{seed}"
        with recorded(cfg, run_dir, "pilot", db=db, progress=False) as (logger, _):
            pts = run_seed(cfg, temperatures, student_steps, opd_steps, n_probe, logger, log)
            fit = fit_line([p.overlap for p in pts], [p.gain for p in pts])
            logger.log_event(f"pilot fit: r={fit.r:.3f} N={fit.n} p={fit.p_value:.3g}")
        points += pts
    fit = fit_line([p.overlap for p in points], [p.gain for p in points])
    payload = {
        "protocol": {
            "teacher_task": teacher_task,
            "student_task": student_task,
            "teacher_steps": cfg.schedule.total_steps() if cfg else 0,
            "student_steps": student_steps,
            "opd_steps": opd_steps,
            "opd": "native GRPO + OPD" if native_rl else "pure OPD",
            "top_k": cfg.diagnostics.top_k if cfg else 10,
            "temperatures": list(temperatures),
            "seeds": list(seeds),
            "overrides": list(overrides),
        },
        "points": [asdict(p) for p in points],
        "fit": asdict(fit),
    }
    (out / "pilot.json").write_text(json.dumps(payload, indent=2) + "\n")
    log(
        f"[pilot] gain vs overlap: slope {fit.slope:.3f}, r = {fit.r:.3f}, N = {fit.n}, "
        f"p = {fit.p_value:.3g} ({fit.p_method})"
    )
    png = write_png(payload, out / "pilot.png", log)
    payload["png"] = str(png) if png else None
    return payload


def write_png(payload: dict, path: Path, log: Callable[[str], None] = print) -> Path | None:
    """The scatter + fit line as a PNG via plotly + kaleido (needs a local Chromium);
    None when that is unavailable (pilot.json and the dashboard still have the data)."""
    try:
        from app.dashboard.figures import pilot_figure  # the dashboard's chart builder

        fig = pilot_figure(payload["points"], payload["fit"])
        fig.write_image(str(path), width=640, height=420, scale=1)
        return path
    except Exception as e:  # kaleido/Chromium missing or failing: the PNG is optional
        log(f"[pilot] no PNG ({type(e).__name__}: {e}); the JSON has every point")
        return None


def cmd_pilot(args) -> int:
    from copd.spec import parse_seeds

    payload = run_pilot(
        [float(t) for t in args.temperatures.split(",")],
        parse_seeds(args.seeds),
        args.set,
        args.out,
        args.db,
        args.group,
        args.teacher,
        args.student,
        args.student_steps,
        args.opd_steps,
        args.n_probe,
        args.native_rl,
        log=lambda m: print(m, file=sys.stderr),
    )
    f = payload["fit"]
    print(f"r = {f['r']:.3f}, N = {f['n']}, p = {f['p_value']:.3g} ({f['p_method']})")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("pilot", help="pilot study: OPD gain vs top-k overlap (paper Fig. 2a/b)")
    p.add_argument("--temperatures", default="0.5,0.8,1.0,1.3,1.6")
    p.add_argument("--seeds", default="0")
    p.add_argument("--teacher", default="rev", help="the teacher expert's domain")
    p.add_argument("--student", default="add", help="the domain students train on first")
    p.add_argument("--student-steps", type=int, default=20)
    p.add_argument("--opd-steps", type=int, default=20)
    p.add_argument("--n-probe", type=int, default=64, help="probe prompts for the overlap")
    p.add_argument("--native-rl", action="store_true", help="OPD updates keep a GRPO batch")
    p.add_argument("--out", default="runs/pilot")
    p.add_argument("--db")
    p.add_argument("--group", default="pilot")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_pilot)
