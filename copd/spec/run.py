"""`RunConfig`: the whole run, its sections, validation across sections and the file round
trip (JSON / YAML). The sections are `sections.py`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from copd.errors import ConfigError, check
from copd.spec.choices import (
    METHODS,
    MIXED_STEPS,
    TRACKERS,
    Method,
    MixedSteps,
    Tracker,
)
from copd.spec.methods import method_info
from copd.spec.runtime import (
    AlertsConfig,
    BackendConfig,
    BenchmarkSpec,
    DiagnosticsConfig,
    EvalConfig,
)
from copd.spec.sections import (
    BranchSpec,
    GRPOConfig,
    MergeConfig,
    ModelConfig,
    OPDConfig,
    SamplingConfig,
    ScheduleConfig,
    TopologyConfig,
)
from copd.spec.serialize import from_dict, nonfinite_fields, to_jsonable

# The reported model of runs whose several branches are never merged (independent
# experts): each branch scored on its own domain, one row composed by the dashboard.
OWN_DOMAIN = "own-domain experts"


def reported_model_of(config: dict[str, Any] | None, method: str) -> str:
    """RunConfig.reported_model of a stored config (a run recorded by an older version
    whose config no longer validates falls back to the merged model). `method` is the
    run's (a `base` run stores the config of the preset whose domains it scores)."""
    if method == "base":
        return "base"
    try:
        return RunConfig.from_dict({**(config or {}), "method": method}).reported_model()
    except (ConfigError, TypeError, ValueError, IndexError):
        return "merged"


@dataclass(frozen=True)
class RunConfig:
    """A whole run. `method` picks the algorithm: CoPD or one of the baselines."""

    name: str = "copd-demo"
    method: Method = "copd"
    seed: int = 0
    group: str | None = None  # ablation set this run belongs to
    threads: int = 0  # torch threads; 0 = all cores (CPU) / leave default
    model: ModelConfig = field(default_factory=ModelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    opd: OPDConfig = field(default_factory=OPDConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    branches: tuple[BranchSpec, ...] = (
        BranchSpec("add", "add"),
        BranchSpec("rev", "rev"),
    )
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per task kwargs
    # Benchmarks scored apart from the training domains, at every evaluation (runtime.py)
    benchmarks: tuple[BenchmarkSpec, ...] = ()
    # A `module:factory` task imports and calls code named by the config; off, only the
    # built-in domains, `rg:` and `dataset` load (like trust_remote_code; `--trust-task-code`).
    trust_task_code: bool = False
    # Baseline knobs (see copd/algorithms): static OPD direction "A->B" (teacher->student),
    # and which branch a single-domain expert run trains.
    static_direction: str | None = None
    mixed_steps: MixedSteps = "combined"  # mixed GRPO: K x T updates, or T of K x prompts
    checkpoint_every: int = 0  # steps; 0 = only at phase ends and on SIGTERM

    # Experiment trackers that also get the metrics, evaluations, samples and this config
    # (beside the run store): any of trackio, tensorboard, wandb, mlflow; each writes under
    # the run folder unless its own settings say otherwise (README, "Where your runs go").
    report_to: tuple[Tracker, ...] = ()

    # ------------------------------------------------------------------ validation
    def validate(self) -> RunConfig:
        """Check every field before any work starts; raise ConfigError naming the fix.
        Each section checks itself, then `check_cross_fields` checks what depends on
        several sections (method, branches, topology, merge weights, backend)."""
        check(self.method in METHODS, "method", f"must be one of {METHODS}")
        bad = nonfinite_fields(self)
        check(not bad, bad[0] if bad else "", "must be a finite number (not inf or NaN)")
        check(self.seed >= 0, "seed", "must be >= 0")
        check(self.threads >= 0, "threads", "use 0 for the default or a positive count")
        check(self.checkpoint_every >= 0, "checkpoint_every", "use 0 or a step count")
        check(self.mixed_steps in MIXED_STEPS, "mixed_steps", f"use one of {MIXED_STEPS}")
        check(
            set(self.report_to) <= set(TRACKERS)
            and len(set(self.report_to)) == len(self.report_to),
            "report_to",
            f"name each tracker once, from {list(TRACKERS)}",
        )
        for section in (self.model, self.sampling, self.grpo, self.opd, self.schedule):
            section.check()
        names = [b.name for b in self.branches]
        check(len(names) >= 1, "branches", "add at least one branch")
        check(len(set(names)) == len(names), "branches", f"branch names must be unique: {names}")
        for b in self.branches:
            b.check()
        for section in (self.topology, self.merge, self.eval, self.diagnostics, self.backend):
            section.check()
        self.alerts.check()
        self.check_benchmarks()
        self.check_cross_fields()
        return self

    def check_benchmarks(self) -> None:
        """Each benchmark checks itself; names are unique and apart from the training
        tasks' and "overall" (a benchmark's scores are `<name>@bench`)."""
        names = [b.name for b in self.benchmarks]
        for b in self.benchmarks:
            b.check()
        check(len(set(names)) == len(names), "benchmarks", f"names must be unique: {names}")

    def check_cross_fields(self) -> None:
        """Rules that read more than one section."""
        names = [b.name for b in self.branches]
        info = method_info(self.method)
        if info.policies != "branches":  # the method trains a policy named after itself
            check(
                self.method not in names,
                "branches",
                f"{self.method!r} is reserved for the {self.method} policy; rename that branch",
            )
        least = info.min_branches
        if least > 1:
            check(
                len(names) >= least,
                "branches",
                f"method {self.method!r} needs >= {least} branches (one per domain)",
            )
        t = self.topology
        if t.kind == "pair" and self.method == "copd":
            check(
                len(names) == 2,
                "topology.kind",
                f"'pair' needs exactly 2 branches (got {len(names)}); use 'hub' or 'full'",
            )
        if t.hub is not None:
            check(t.hub in names, "topology.hub", f"{t.hub!r} is not a branch; pick one of {names}")
        mg = self.merge
        # Weights apply alike to full-weight and LoRA branches: normalised by average/weighted,
        # per-task coefficients for task_arithmetic; TIES has no use for them.
        check(
            not (mg.weights and mg.method == "ties"),
            "merge.weights",
            "'ties' does not use weights; leave merge.weights empty, or use merge.method "
            "'weighted' or 'task_arithmetic'",
        )
        if mg.method == "weighted" or mg.weights:
            check(
                len(mg.weights) == len(names),
                "merge.weights",
                f"give one weight per branch ({len(names)})",
            )
        if mg.method == "weighted" or (mg.weights and mg.method == "average"):
            check(
                all(w >= 0 for w in mg.weights) and sum(mg.weights) > 0,
                "merge.weights",
                "weights must be >= 0 and not all zero",
            )
        if self.method == "static_opd" and self.static_direction is not None:
            parts = self.static_direction.split("->")
            check(
                len(parts) == 2 and all(p in names for p in parts) and parts[0] != parts[1],
                "static_direction",
                f"write TEACHER->STUDENT with two branch names from {names}",
            )
        check(
            self.opd.samples == "student" or self.method == "mopd",
            "opd.samples",
            f"'teacher' (supervised on the teachers' answers) is a MOPD variant; use method "
            f"'mopd', or 'student' for {self.method!r}",
        )
        if self.backend.kind == "ray":
            check(
                self.method == "copd",
                "backend.kind",
                f"'ray' runs the copd method only; use 'local' for {self.method!r}",
            )

    # ------------------------------------------------------------------ derived
    @property
    def branch_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.branches)

    @property
    def hub(self) -> str:
        return self.topology.hub or self.branches[0].name

    def static_pair(self) -> tuple[str, str]:
        """Static OPD's (teacher, student): `static_direction` "TEACHER->STUDENT", else the
        first branch teaches the second."""
        if self.static_direction is None:
            return self.branches[0].name, self.branches[1].name
        teacher, student = self.static_direction.split("->")
        return teacher, student

    def reported_model(self) -> str:
        """The model a run is judged by, the one rule every comparison uses (the method
        table's `reported`): the merged model where branches are merged (CoPD, the weight
        average), the one policy of mixed GRPO and MOPD, the static-OPD student, and each
        expert on its own domain (OWN_DOMAIN, composed from the branches' scores) where
        several branches are never merged; a single branch is itself."""
        rule = method_info(self.method).reported
        if rule == "policy":
            return self.method
        if rule == "student":
            return self.static_pair()[1]
        if len(self.branches) == 1:
            return self.branches[0].name
        if rule == "merged" and self.merge.enabled:
            return "merged"
        return OWN_DOMAIN

    def policy_names(self) -> list[str]:
        """The policies a run instantiates (the method table's `policies`): the branches,
        one policy named after the method (mixed GRPO), or the branches as experts plus a
        student named after the method (MOPD)."""
        kind = method_info(self.method).policies
        if kind == "one":
            return [self.method]
        if kind == "branches+student":
            return [*self.branch_names, self.method]
        return list(self.branch_names)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=False)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return from_dict(cls, data)

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist; pass a preset name or a path")
        text = p.read_text()
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
        return cls.from_dict(data)
