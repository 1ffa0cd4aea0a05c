"""The stack commands through typer's CliRunner: what they print and how they exit."""

from __future__ import annotations

import pytest

from localsuite.core.stack import ProcessState, ServiceState, StackState
from localsuite.supervisor.state import pid_alive, write_state
from localsuite.supervisor.supervisor import Supervisor

from .conftest import Cli, Spawn

BUNDLED = "SmolLM2-135M-Instruct.Q4_1.gguf"
IGNORES_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(120)"
)
OBEYS_TERM = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
    "print('ready', flush=True); time.sleep(120)"
)


def test_without_a_stack_status_says_how_to_start_one(cli: Cli) -> None:
    result = cli("status")
    assert result.exit_code == 1
    assert "no stack is running; `localsuite up --detach` starts one" in result.stderr


def test_status_renders_what_the_control_api_answers(cli: Cli, control: Supervisor) -> None:
    result = cli("status")
    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if "│" in line}
    assert {"inference-chat", "inference-code", "embedding", "rag", "api-gateway"} <= set(lines)
    assert "stopped" in lines["inference-chat"] and "SmolLM2" in lines["inference-chat"]
    assert "waiting for inference-chat, inference-code" in lines["api-gateway"]


def test_up_is_refused_while_a_stack_runs(cli: Cli, control: Supervisor) -> None:
    result = cli("up", "--preset", "p1")
    assert result.exit_code == 1 and "a stack is already running" in result.stderr


def test_a_switch_the_supervisor_refuses_is_an_error_with_its_reason(
    cli: Cli, control: Supervisor
) -> None:
    result = cli("switch-model", "inference-chat", "nope.gguf")
    assert result.exit_code == 1
    assert f"valid models: {BUNDLED}, other.gguf" in result.stderr
    unknown = cli("restart", "nope")
    assert unknown.exit_code == 1 and "no service 'nope' in this stack" in unknown.stderr


def test_models_lists_the_registry_and_who_serves_what(cli: Cli, control: Supervisor) -> None:
    result = cli("models")
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if "│" in line}
    assert "inference-chat, inference-code" in rows[BUNDLED] and "other.gguf" in rows


def test_down_with_nothing_running(cli: Cli, spawn: Spawn) -> None:
    assert "nothing is running" in cli("down").stdout
    gone = spawn("print('ready', flush=True)")
    gone.wait(timeout=10)
    stale = StackState(supervisor_pid=gone.pid, preset="p1", written_at=0, services={})
    write_state(cli.settings, stale)
    assert "nothing is running" in cli("down").stdout


def test_down_stops_the_supervisor_and_kills_what_outlives_the_timeout(
    cli: Cli, spawn: Spawn
) -> None:
    supervisor = spawn(OBEYS_TERM)
    deaf = spawn(IGNORES_TERM)
    service = ServiceState(
        state=ProcessState.READY, pid=deaf.pid, port=1, health_url="http://h", log="x"
    )
    state = StackState(
        supervisor_pid=supervisor.pid, preset="p1", written_at=0, services={"deaf": service}
    )
    write_state(cli.settings, state)
    result = cli("down", "--timeout", "1")
    assert result.exit_code == 0, result.output
    assert f"killed pid {deaf.pid}: still running after 1s" in result.stderr
    assert "stopped" in result.stdout
    assert supervisor.wait(timeout=10) == 0  # SIGTERM, which it obeys
    assert deaf.wait(timeout=10) == -9  # SIGKILL, after the timeout
    assert not pid_alive(deaf.pid)


def test_logs_prints_the_last_lines_and_names_a_missing_log(cli: Cli) -> None:
    logs = cli.settings.data_dir / "logs"
    logs.mkdir(parents=True)
    (logs / "rag.log").write_text("".join(f"line {n}\n" for n in range(60)))
    result = cli("logs", "rag", "-n", "3")
    assert result.exit_code == 0 and result.stdout.splitlines() == [
        "line 57", "line 58", "line 59",
    ]  # fmt: skip
    missing = cli("logs", "nope")
    assert missing.exit_code == 1 and "no log for 'nope'" in missing.stderr


def test_compose_refuses_two_files_at_once(cli: Cli) -> None:
    result = cli("compose", "--template", "--gpu")
    assert result.exit_code == 2 and "choose --template or --gpu, not both" in result.stderr


def test_compose_makes_a_key_for_a_stack_that_has_none(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(cli.root)  # `.env` is written where Compose will read it
    result = cli("compose")
    assert result.exit_code == 0, result.stderr
    written = (cli.root / ".env").read_text()
    key = written.strip().rpartition("LOCALSUITE_API_KEY=")[2]
    assert len(key) >= 32 and "wrote a new LOCALSUITE_API_KEY" in result.stderr
    assert key not in result.stdout  # the file references it; Compose reads it from .env
    assert "${LOCALSUITE_API_KEY:?" in result.stdout
    cli.env["LOCALSUITE_API_KEY"] = key
    again = cli("compose")
    assert again.exit_code == 0 and "wrote a new" not in again.stderr
    assert (cli.root / ".env").read_text() == written  # one key, not a new one each time
