"""A Hub-ready folder from a finished run: the merged model with its tokenizer, a model card
(README.md, written with huggingface_hub's ModelCard / ModelCardData) and results.json;
uploaded to the Hugging Face Hub only when asked.

    out = export_run("runs/3-copd-demo", "export/copd-demo", revision="1a2b3c4")
    export_run(run_dir, out, push="me/copd-demo")        # + create_repo + upload_folder

The model is the run's own `<run_dir>/merged/` (written by copd/train/results.py when the
run ends), copied as it is, so `AutoModelForCausalLM.from_pretrained(out)` gives the run's
merged model exactly; a LoRA run's linear merge is written as one peft adapter instead
(copd/tools/export_lora.py; `full=True` / `--full` keeps the full model). The card's
metadata: the base model (its Hub name, also when a local folder names one; the local
path beside it), the license carried from the base's card (else "unknown"), the branches'
tasks, the method's tags (`copd`, `grpo`, `on-policy-distillation`, ...), the run's
held-out scores of the merged model as model-index entries (one per benchmark, test and
validation splits), the code revision; its text: what CoPD is with the paper's link, what
was trained (domains and data sizes, merge, schedule, main settings), the license, the
scores table, how to load it and the whole config.

Called by `copd export RUN --out DIR [--push REPO]` (app/control/export_cli.py, which finds
a stored run's folder and code revision) and the Runs page. Nothing here loads torch,
except a LoRA run's adapter.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from copd.spec.methods import METHOD_TABLE

HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ExportError(ValueError):
    """A run that cannot be exported as asked; the message names the fix."""

    user_error = True


def read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's config.json and results.json; ExportError naming what is missing."""
    cfg_path, res_path = run_dir / "config.json", run_dir / "results.json"
    if not cfg_path.is_file():
        raise ExportError(f"{run_dir} holds no config.json: pass a run folder or a run id")
    if not res_path.is_file():
        raise ExportError(
            f"{run_dir} has no results.json: the run has not finished; export it once it has"
        )
    return json.loads(cfg_path.read_text()), json.loads(res_path.read_text())


PAPER = "https://arxiv.org/abs/2604.27083"


@dataclass(frozen=True)
class BaseModel:
    """What the card says of the base model, read once per card."""

    name: str | None  # its Hub name, or None (the demo model, a folder that names none)
    path: str  # config model.path ("demo" for the built-in model)
    license: str  # carried from the local base's card, else "unknown"


def base_model_of(config: dict[str, Any]) -> BaseModel:
    """The base model as the card names it. A Hub name as model.path is its name; a local
    folder saved from a Hub model names it (its card's `base_model`, else its config's
    `_name_or_path` when that is a Hub name). The license comes from the local base's card;
    "unknown" where the card is absent or names none (a Hub base's card is not fetched: no
    network at export)."""
    path = str(config.get("model", {}).get("path", ""))
    local = Path(path).expanduser()
    if path == "demo" or not local.exists():
        name = path if path != "demo" and HUB_NAME.match(path) else None
        return BaseModel(name, path, "unknown")
    card = card_metadata(local / "README.md")
    license_ = str(card.get("license") or "unknown")
    named = card.get("base_model")
    if isinstance(named, str) and HUB_NAME.match(named):
        return BaseModel(named, path, license_)
    try:
        origin = json.loads((local / "config.json").read_text()).get("_name_or_path", "")
    except (OSError, ValueError):
        origin = ""
    hub = isinstance(origin, str) and HUB_NAME.match(origin) and not Path(origin).exists()
    return BaseModel(origin if hub else None, path, license_)


def card_metadata(readme: Path) -> dict[str, Any]:
    """The metadata of a model card file, {} when there is none."""
    from huggingface_hub import ModelCard

    if not readme.is_file():
        return {}
    try:
        return ModelCard.load(readme).data.to_dict()
    except Exception:  # a README that is no model card: no metadata to carry
        return {}


def training_data(config: dict[str, Any]) -> list[str]:
    """One line per branch: its domain and how much data it trains on (a dataset's rows
    per split; a built-in domain is generated, with disjoint held-out splits)."""
    from copd.tasks import get_task

    lines = []
    for b in config.get("branches", []):
        spec = str(b.get("task"))
        try:
            options = (config.get("task_options") or {}).get(spec, {})
            task = get_task(spec, trust_task_code=False, **options)
        except Exception:  # a module:factory task (not run here without trust), a moved file
            lines.append(f"- branch `{b.get('name')}`: task `{spec}` (sizes not read at export)")
            continue
        if hasattr(task, "train") and hasattr(task, "held_out"):
            sizes = (
                f"dataset: {len(task.train)} training / {len(task.validation)} validation / "
                f"{len(task.held_out)} test rows"
            )
        else:
            sizes = "built-in domain, generated (training, validation and test splits disjoint)"
        lines.append(f"- branch `{b.get('name')}`: task `{spec}`, {sizes}")
    return lines


def hyper_parameters(config: dict[str, Any]) -> str:
    """The main settings in one line."""
    g, o, sc = config.get("grpo", {}), config.get("opd", {}), config.get("schedule", {})
    return (
        f"GRPO lr {g.get('lr')}, group size {g.get('group_size')}, {g.get('prompts_per_step')} "
        f"prompts per step; OPD beta {o.get('beta')}, {o.get('cross_prompts_per_step')} cross "
        f"prompts x {o.get('cross_group_size')} samples per teacher, advantage "
        f"`{o.get('advantage')}`; {sc.get('cycles')} cycles of {sc.get('rl_steps')} RL + "
        f"{sc.get('opd_steps')} OPD steps; seed {config.get('seed')}"
    )


def card_tags(config: dict[str, Any]) -> list[str]:
    method = METHOD_TABLE.get(config.get("method", ""))
    tags = ["copd", *(method.tags if method else ())]
    if config.get("model", {}).get("branch_kind") == "lora":
        tags.append("lora")
    return tags


def eval_results(scores: dict[str, float]) -> list:
    """The merged model's scores as model-index entries: one per benchmark, the split named
    (`add` test, `add@val` validation)."""
    from huggingface_hub import EvalResult

    out = []
    for bench, score in scores.items():
        name, _, split = bench.partition("@")
        out.append(
            EvalResult(
                task_type="text-generation", dataset_type=name, dataset_name=name,
                dataset_split="validation" if split == "val" else "test",
                metric_type="accuracy", metric_name="accuracy", metric_value=float(score),
            )
        )  # fmt: skip
    return out


def card_text(
    config: dict[str, Any], scores: dict[str, float], revision: str | None, base: BaseModel
) -> str:
    """The card's markdown below the metadata."""
    called = base.name or (
        "the built-in demo model" if base.path == "demo" else "a local base model"
    )
    branches = ", ".join(f"`{b['name']}` ({b['task']})" for b in config.get("branches", []))
    sch = config.get("schedule", {})
    lines = [
        f"# {config.get('name', 'copd model')}",
        "",
        f"Trained with copd (Co-Evolving Policy Distillation workbench), method "
        f"`{config.get('method')}`, from {called}"
        + ("" if base.path == "demo" else f" (`{base.path}`)")
        + f". Branches: {branches}; "
        f"{sch.get('cycles')} cycles of {sch.get('rl_steps')} GRPO and {sch.get('opd_steps')} "
        f"on-policy distillation steps; merge: {config.get('merge', {}).get('method')}.",
        "",
        "Co-Evolving Policy Distillation ([arXiv 2604.27083](" + PAPER + ")) trains several "
        "copies of one base model, each on its own capability with GRPO on verifiable "
        "rewards, and has them teach each other periodically by on-policy distillation "
        "(a branch samples on its peer's prompts and the peer scores every token). After "
        "the last cycle the branches are merged by parameter averaging into this model.",
        "",
        "## Training",
        "",
        *training_data(config),
        "",
        f"Merge: `{config.get('merge', {}).get('method')}`. {hyper_parameters(config)}.",
        "",
        f"License: `{base.license}` (carried from the base model's card; `unknown` "
        "where that card names none: check the base model's terms).",
        "",
        f"Code revision: `{revision or 'unknown'}`.",
        "",
        "## Evaluation (greedy, held-out)",
        "",
        "| benchmark | split | accuracy |",
        "|---|---|---|",
    ]
    for bench, score in scores.items():
        name, _, split = bench.partition("@")
        lines.append(f"| {name} | {'validation' if split else 'test'} | {score:.3f} |")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "model = AutoModelForCausalLM.from_pretrained(PATH_OR_REPO)",
        "tokenizer = AutoTokenizer.from_pretrained(PATH_OR_REPO)",
        "```",
        "",
        "## Config",
        "",
        "```json",
        json.dumps(config, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def model_card(
    config: dict[str, Any], scores: dict[str, float], revision: str | None, adapter: bool = False
):
    """A huggingface_hub ModelCard for the merged model of a run (a peft adapter's card
    when `adapter`)."""
    from huggingface_hub import ModelCard, ModelCardData

    base = base_model_of(config)
    data = ModelCardData(
        model_name=config.get("name"), base_model=base.name, license=base.license,
        base_model_path=None if base.path == "demo" else base.path,
        datasets=[str(b.get("task")) for b in config.get("branches", [])] or None,
        library_name="peft" if adapter else "transformers", pipeline_tag="text-generation",
        tags=card_tags(config),
        eval_results=eval_results(scores) or None, code_revision=revision,
        copd_method=config.get("method"),
    )  # fmt: skip
    text = card_text(config, scores, revision, base)
    if adapter:
        text = text.replace(
            "model = AutoModelForCausalLM.from_pretrained(PATH_OR_REPO)",
            "from peft import PeftModel\n"
            "base = AutoModelForCausalLM.from_pretrained(BASE_MODEL)\n"
            "model = PeftModel.from_pretrained(base, PATH_OR_REPO)  # the branches' merge, exactly",
        )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}")


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    revision: str | None = None,
    push: str | None = None,
    private: bool = True,
    api: Any = None,
    full: bool = False,
) -> Path:
    """Write the Hub-ready folder `out` from the finished run in `run_dir` (module doc);
    with `push`, upload it to that Hub repository (created private unless `private=False`).
    A LoRA run exports one peft adapter unless `full` (or its merge is not linear).
    ExportError before anything is written when the run has no merged model or `out`
    holds files already."""
    run_dir, out = Path(run_dir), Path(out)
    if push and not HUB_NAME.match(push):
        raise ExportError(f"--push {push!r}: give a Hub repository as OWNER/NAME")
    config, results = read_run(run_dir)
    merged = run_dir / "merged"
    if not (merged / "config.json").is_file():
        raise ExportError(
            f"{run_dir} has no merged model ({merged}): only runs that merge their branches "
            "(merge.enabled with two or more branches) export a model"
        )
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"--out {out} is not empty: pass a new folder")
    scores = dict(results.get("scores", {}).get("merged", {}))
    kind = write_model(run_dir, out, config, results, full=full)
    model_card(config, scores, revision, adapter=kind == "adapter").save(out / "README.md")
    payload = {**results, "model": f"merged ({kind})", "run": config.get("name"),
               "code_revision": revision}  # fmt: skip
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    if push:
        push_folder(out, push, private=private, api=api, name=str(config.get("name")))
    return out


TOKENIZER_FILES = ("tokenizer*", "special_tokens_map.json", "vocab*", "merges.txt", "*.jinja",
                   "chat_template*", "generation_config.json")  # fmt: skip


def write_model(run_dir: Path, out: Path, config: dict, results: dict, full: bool) -> str:
    """The merged model into `out`: "full" (a copy of merged/) or "adapter" (a LoRA run's
    merge as one peft adapter, copd/tools/export_lora.py, with the tokenizer); why a LoRA
    run could not be an adapter is printed and the full model written."""
    merged = run_dir / "merged"
    if config.get("model", {}).get("branch_kind") == "lora" and not full:
        from copd.tools.export_lora import adapter_problem, write_adapter

        problem = adapter_problem(run_dir, config, results.get("steps"))
        if problem is None:
            out.mkdir(parents=True, exist_ok=True)
            for pattern in TOKENIZER_FILES:
                for f in merged.glob(pattern):
                    shutil.copy2(f, out / f.name)
            write_adapter(run_dir, out, config)
            return "adapter"
        print(f"LoRA run exported as the full merged model: {problem}", file=sys.stderr)
    shutil.copytree(merged, out, dirs_exist_ok=True)
    return "full"


def push_folder(out: Path, repo: str, *, private: bool, api: Any = None, name: str = "") -> str:
    """Create the Hub model repository `repo` (kept if it exists) and upload `out`; the
    commit's URL. Uses the token of `hf auth login` / $HF_TOKEN."""
    if not HUB_NAME.match(repo):
        raise ExportError(f"--push {repo!r}: give a Hub repository as OWNER/NAME")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo, folder_path=str(out), repo_type="model",
        commit_message=f"copd export of run {name}",
    )  # fmt: skip
    return str(getattr(info, "commit_url", info))
