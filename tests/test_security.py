"""What the workbench refuses, tested through its real doors:

- user text in the dashboard's markdown (run names, groups, errors) shows literally: the
  escaping helper on hostile payloads, and the Live/Runs headings' markdown source (AppTest;
  the real-browser check of the same runs is in tests/test_browser.py);
- a task given as `module:factory` runs no code without `--trust-task-code` (`copd check`
  in a subprocess: `os:system` creates no file), the Launch page refuses one unless the
  dashboard trusts task code, and a factory must be a function or Task class returning a Task;
- `copd dashboard` refuses a non-loopback host without `--allow-remote`, and a port that is
  taken, before Streamlit starts; with a token set no page renders without `?token=`;
- SIGKILL of `copd dashboard` takes its Streamlit child and supervisor with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest
from waits import wait_until

from app.dashboard.text import WORD_JOINER, md_escape, md_line
from copd.spec import RunConfig
from copd.tasks import Task, get_task, needs_trust
from storage import RunStore
from tests.app_support import clear_caches, new_app, use_store

ROOT = Path(__file__).resolve().parent.parent
ENTRY = str(ROOT / "app" / "main.py")
EVIL_LINK, EVIL_IMG = "http://evil.example/x", "http://127.0.0.1:9/p.png"
# A group is free text; a run name may hold anything but '/', '\\' and '..'.
GROUP = f"[x]({EVIL_LINK}) ![p]({EVIL_IMG}) <img src='{EVIL_IMG}'> www.evil.example $x^2$"
NAME = "run ![q](evil.example) [n](www.evil.example) <b>x</b> :red[boom] **bold**"
ERROR = f"RuntimeError: ![e]({EVIL_IMG}) see <{EVIL_LINK}>"
PAYLOADS = [GROUP, NAME, ERROR, "a_b*c*`d`~e~|f|#g+h-i.j!k{l}(m)[n]\\o<p>q$r$ s@t.u :smile:"]


def shown(markdown: str) -> str:
    """The text a markdown source made only of escapes and plain characters shows (word
    joiners are invisible)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace(WORD_JOINER, "")


# ---------------------------------------------------------------------- md_escape
@pytest.mark.parametrize("payload", PAYLOADS)
def test_md_escape_renders_hostile_text_literally(payload):
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    html = md.render(md_escape(payload))
    assert "<a" not in html and "<img" not in html and "<em>" not in html
    assert "<strong>" not in html and "<code>" not in html and "<s>" not in html
    assert shown(md_escape(payload)) == payload  # nothing lost, only escaped
    # GFM's bare-URL autolinks, math and :directives: need an unescaped ':', '.', '@', '$'
    assert not re.search(r"(?<!\\)[:.@$\[\]()<>!]", md_escape(payload))
    # GFM links bare URLs after the escapes are resolved: the text it sees has none
    seen = re.sub(r"\\(.)", r"\1", md_escape(payload))
    assert not re.search(r"(?i)https?://|www\.|[-.\w+]@", seen), seen


def test_md_line_keeps_a_heading_on_one_line():
    assert md_line("a\n# b\r\nc") == "a \\# b c"
    assert md_escape(3) == "3" and md_escape("plain words") == "plain words"


# ---------------------------------------------------------------------- AppTest headings
def seed_hostile(url: str) -> dict[str, int]:
    """Two runs in a hostile group (one with a hostile name, one failed with a hostile
    error) and nothing else: the Live view's group heading and the Runs view's run heading
    carry the payloads."""
    store = RunStore.from_url(url)
    cfg = RunConfig(name="plain", group=GROUP).to_dict()
    a = store.create_run(name=NAME, method="copd", config=cfg, group=GROUP)
    b = store.create_run(name="peer", method="expert", config=cfg, group=GROUP)
    store.set_status(b.id, "running")
    store.set_status(b.id, "failed", error=ERROR)
    return {"named": a.id, "failed": b.id}


@pytest.fixture
def hostile_app(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    ids = seed_hostile(url)
    use_store(monkeypatch, tmp_path, url)
    monkeypatch.delenv("COPD_DASHBOARD_TOKEN", raising=False)
    yield new_app(), ids
    clear_caches()


def _no_markup(source: str) -> None:
    assert not re.search(r"(?<!\\)[\[\]()<>!$:]", source), source  # every one escaped


def test_live_and_runs_headings_escape_names_groups_and_errors(hostile_app):
    at, ids = hostile_app
    at.run()
    at.query_params["run"] = str(ids["named"])
    at.switch_page("../pages/live.py").run()
    assert not at.exception
    heads = [h.value for h in at.subheader if h.value.startswith("Group ")]
    assert heads == [f"Group {md_line(GROUP)}: CoPD vs independent experts"]
    _no_markup(heads[0].removeprefix("Group ").removesuffix(": CoPD vs independent experts"))
    assert shown(heads[0]).startswith(f"Group {GROUP}:")

    at.switch_page("../pages/runs.py").run()
    at.selectbox(key="runs:selected").set_value(ids["named"]).run()
    assert not at.exception
    head = next(h.value for h in at.subheader if h.value.startswith(f"#{ids['named']} "))
    assert head == f"#{ids['named']} {md_line(NAME)}"
    _no_markup(head.removeprefix(f"#{ids['named']} "))
    at.selectbox(key="runs:selected").set_value(ids["failed"]).run()
    errors = [e.value for e in at.error]
    assert errors == [f"failed: {md_line(ERROR)}"]
    _no_markup(errors[0].removeprefix("failed: "))


# ---------------------------------------------------------------------- task factories
FACTORY_MODULE = """
from copd.tasks import Example, Task

class Echo(Task):
    name, alphabet, max_answer_chars = "echo", "xyz=", 3

    def __init__(self, word="xyz"):
        self.word = word

    def sample(self, rng, n):
        return [Example(self.word + "=", self.word, self.name)] * n

    def eval_examples(self, n):
        return [Example(self.word + "=", self.word, self.name)] * n

def make_task(word="xyz") -> Task:
    return Echo(word)

def not_a_task():
    return 42

class Popen:  # a class that builds something other than a Task
    def __init__(self, **kw):
        raise AssertionError("called")
"""


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "sec_tasks_mod.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("sec_tasks_mod", None)


def test_custom_factories_need_the_opt_in_and_must_build_a_task(factory_module):
    with pytest.raises(ValueError, match="--trust-task-code"):
        get_task("sec_tasks_mod:make_task")
    assert "sec_tasks_mod" not in sys.modules  # refused before the import ran its code
    with pytest.raises(ValueError, match="--trust-task-code"):
        get_task("os:system", command="true")
    task = get_task("sec_tasks_mod:make_task#a", trust_task_code=True, word="zy")
    assert isinstance(task, Task) and task.eval_examples(1)[0].answer == "zy"
    with pytest.raises(TypeError, match="builtin_function_or_method, not a task factory"):
        get_task("os:system", trust_task_code=True, command="true")
    with pytest.raises(TypeError, match="not a task factory"):
        get_task("sec_tasks_mod:Popen", trust_task_code=True)  # checked before the call
    with pytest.raises(TypeError, match="returned int, not a Task"):
        get_task("sec_tasks_mod:not_a_task", trust_task_code=True)
    # built-ins, the dataset alias and reasoning-gym names need no opt-in
    assert [needs_trust(s) for s in ("add", "dataset#x", "copd.tasks.datasets:from_file")] == [
        False,
        False,
        False,
    ]
    assert needs_trust("rg:leg_counting") is False and needs_trust("os:system#x") is True


def _copd(*argv: str, cwd: Path, env_extra: dict | None = None, timeout: float = 120):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT))
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "copd", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


PWN = [
    "--set",
    'branches=[{"name":"a","task":"add"},{"name":"b","task":"os:system"}]',
    "--set",
    'task_options={"os:system":{"command":"touch pwned"}}',
]


def test_copd_check_runs_no_code_a_config_names(tmp_path, factory_module):
    out = _copd("check", "demo", *PWN, cwd=tmp_path)
    assert out.returncode == 2 and not (tmp_path / "pwned").exists()
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "--trust-task-code" in lines[0] and "os:system" in lines[0]
    branches = 'branches=[{"name":"a","task":"add"},{"name":"b","task":"sec_tasks_mod:make_task"}]'
    env = {"PYTHONPATH": f"{factory_module}{os.pathsep}{ROOT}"}
    refused = _copd("check", "demo", "--set", branches, cwd=tmp_path, env_extra=env)
    assert refused.returncode == 2 and "--trust-task-code" in refused.stderr
    ok = _copd("check", "demo", "--trust-task-code", "--set", branches, cwd=tmp_path, env_extra=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: 2 task(s)")


def test_the_launch_page_refuses_a_custom_factory_unless_the_dashboard_trusts_it(
    hostile_app, monkeypatch, tmp_path
):
    from app.dashboard.launch_form import CUSTOM_TASK

    at, _ = hostile_app
    monkeypatch.delenv("COPD_TRUST_TASK_CODE", raising=False)
    url = os.environ["COPD_DB_URL"]
    before = len(RunStore.from_url(url).list_runs())
    at.run()
    at.switch_page("../pages/launch.py").run()
    at.selectbox(key="cfg:demo:br1:task").set_value(CUSTOM_TASK).run()
    at.text_input(key="cfg:demo:br1:custom").set_value("os:system").run()
    assert any("copd dashboard --trust-task-code" in shown(e.value) for e in at.error)
    at.button(key="launch:go").click().run()
    assert any("Nothing was launched" in e.value for e in at.error)
    assert len(RunStore.from_url(url).list_runs()) == before

    from app.dashboard.widgets import task_trust

    cfg = RunConfig(branches=RunConfig().branches[:1] + (RunConfig().branches[0],))
    assert task_trust(cfg) == (cfg, None)  # built-ins: nothing to refuse
    hostile = RunConfig.from_dict({**cfg.to_dict(), "trust_task_code": True})
    assert "trust_task_code is set" in task_trust(hostile)[1]  # no opt-in by the form
    monkeypatch.setenv("COPD_TRUST_TASK_CODE", "1")
    custom = RunConfig.from_dict(
        {**cfg.to_dict(), "branches": [{"name": "a", "task": "add"}, {"name": "b", "task": "m:f"}]}
    )
    trusted, refused = task_trust(custom)
    assert refused is None and trusted.trust_task_code is True


# ---------------------------------------------------------------------- copd dashboard
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_dashboard_refuses_a_public_host_and_a_taken_port_before_starting(tmp_path):
    port = _free_port()
    out = _copd("dashboard", "--host", "0.0.0.0", "--port", str(port), cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and not _listening(port)
    line = out.stderr.strip()
    assert (
        "\n" not in line and "--allow-remote" in line and f"ssh -L {port}:127.0.0.1:{port}" in line
    )
    assert "copd dashboard on" not in out.stderr  # refused before Streamlit was started

    with socket.socket() as held:  # this process holds the port
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        out = _copd("dashboard", "--port", str(taken), cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    assert f"port {taken} is in use by pid {os.getpid()}" in out.stderr
    assert "stop the other dashboard or pass --port" in out.stderr


def test_the_token_gate_stops_every_page_until_the_token_is_given(hostile_app, monkeypatch):
    at, _ = hostile_app
    monkeypatch.setenv("COPD_DASHBOARD_TOKEN", "s3cret")
    at.run()
    assert not at.exception
    assert any("access token" in e.value for e in at.error)
    assert not at.title  # no page rendered
    at.query_params["token"] = "wrong"
    at.run()
    assert not at.title and any("access token" in e.value for e in at.error)
    at.query_params["token"] = "s3cret"
    at.run()
    assert not at.exception and at.title[0].value.startswith(":material/monitoring: copd")
    del at.query_params["token"]  # a link that drops it: the session remembers it ...
    at.switch_page("../pages/runs.py").run()
    assert at.title[0].value == ":material/table_rows: Runs"
    assert at.query_params["token"] == "s3cret"  # ... and puts it back, so a reload keeps it


def test_killing_the_dashboard_takes_streamlit_and_the_supervisor_with_it(tmp_path):
    port = _free_port()
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        COPD_HOME=str(tmp_path / "home"),
        COPD_SUPERVISE="0",
        PYTHONPATH=str(ROOT),
    )
    db = f"sqlite:///{tmp_path / 'copd.db'}"
    log = open(tmp_path / "dashboard.log", "w")  # noqa: SIM115  (closed below)
    parent = subprocess.Popen(
        [sys.executable, "-m", "copd", "dashboard", "--port", str(port), "--db", db],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def healthy() -> bool:
            with contextlib.suppress(OSError):
                return bool(
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                )
            return False

        wait_until(healthy, "serving", proc=parent, log=tmp_path / "dashboard.log", poll=0.5)
        children = psutil.Process(parent.pid).children()
        cmds = [" ".join(c.cmdline()) for c in children]
        assert any("streamlit" in c for c in cmds) and any("supervise" in c for c in cmds), cmds
        # one supervisor per dashboard: the server starts no supervisor thread of its own
        server = next(c for c in children if "streamlit" in " ".join(c.cmdline()))
        assert server.environ().get("COPD_SUPERVISE") == "0"
        # ... its pages wake the supervisor process, which keeps the standby trainer
        assert server.environ().get("COPD_WAKE_SUPERVISOR") == "1"
        assert any("supervise" in c and "--standby" in c for c in cmds), cmds
        parent.kill()  # SIGKILL: no handler of the parent runs
        parent.wait(10)
        gone, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, [p.cmdline() for p in alive]
        assert not _listening(port)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        log.close()


def test_a_config_value_alone_never_trusts_task_code(tmp_path, factory_module):
    """`trust_task_code: true` in a config file or `--set` ran custom code without the flag
    (before); now it is refused in one line, and only `--trust-task-code` trusts."""
    branches = 'branches=[{"name":"a","task":"add"},{"name":"b","task":"sec_tasks_mod:make_task"}]'
    env = {"PYTHONPATH": f"{factory_module}{os.pathsep}{ROOT}"}
    via_set = _copd("check", "demo", "--set", branches, "--set", "trust_task_code=true",
                    cwd=tmp_path, env_extra=env)  # fmt: skip
    config = RunConfig.from_dict(
        {**RunConfig().to_dict(), "trust_task_code": True,
         "branches": [{"name": "a", "task": "add"}, {"name": "b", "task": "sec_tasks_mod:make_task"}]}
    )  # fmt: skip
    (tmp_path / "c.json").write_text(json.dumps(config.to_dict()))
    via_file = _copd("check", str(tmp_path / "c.json"), cwd=tmp_path, env_extra=env)
    for res in (via_set, via_file):
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1, res.stderr
        assert "never trusts task code by itself" in lines[0]
    ok = _copd("check", str(tmp_path / "c.json"), "--trust-task-code", cwd=tmp_path, env_extra=env)
    assert ok.returncode == 0, ok.stderr


def test_resuming_a_run_that_imports_task_code_asks_for_the_flag_again(tmp_path):
    """A run launched with --trust-task-code was resumed without it (before); now `copd
    resume` refuses without the flag, and the resumed start passes it to the trainer."""
    from app.control.launcher import Launcher, LauncherError

    store = RunStore.from_url(f"sqlite:///{tmp_path / 'copd.db'}")
    fake = [sys.executable, str(Path(__file__).parent / "fake_trainer.py")]
    launcher = Launcher(store, tmp_path / "runs", max_cpu_runs=1, gpus=[], heartbeat_s=1,
                        trainer_argv=fake, preflight=False)  # fmt: skip
    cfg = RunConfig().to_dict() | {"trust_task_code": True}
    cfg["schedule"]["cycles"] = 2
    run = launcher.submit(cfg, name="custom")
    launcher.cancel(run.id)
    with pytest.raises(LauncherError, match="--trust-task-code"):
        launcher.resume(run.id)
    assert store.get_run(run.id).status == "cancelled"
    assert launcher.resume(run.id, trust_task_code=True).status == "queued"

    def ended():
        launcher.tick()  # starts it, and notices a crash
        return store.get_run(run.id).is_terminal

    wait_until(ended, "ended")
    assert store.get_run(run.id).status == "finished", launcher.log_tail(run.id)
    assert "trusted=True" in launcher.log_tail(run.id)
    store.close()
