"""Helpers shared by tests that run the trainer on the tiny test model (importable from
any test module as `from tiny_support import ...`; conftest modules are not importable by
name once there are several)."""


def tiny_overrides(model_dir: str) -> list[str]:
    """`--set` overrides that make any preset run in seconds on the tiny test model."""
    return [
        f"model.path={model_dir}",
        "threads=1",
        "schedule.cycles=2",
        "schedule.rl_steps=2",
        "schedule.opd_steps=1",
        "schedule.diag_every=0",
        "schedule.eval_every_cycles=1",
        "grpo.prompts_per_step=4",
        "grpo.group_size=4",
        "opd.cross_prompts_per_step=4",
        "opd.cross_group_size=2",
        "sampling.max_new_tokens=4",
        "eval.n_prompts=8",
        "diagnostics.n_prompts=4",
        'task_options={"add": {"difficulty": 1}, "rev": {"difficulty": 1}, '
        '"sort": {"difficulty": 1}, "count": {"difficulty": 1}}',
    ]
