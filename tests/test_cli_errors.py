"""The CLI's one error boundary: bad input exits 2 with one line, internal errors exit 1 with one line.

Also the reliability defects of issue 9 that reach the CLI: each gives one line on stderr, the right
exit code, and leaves existing files alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from megen.cli.common import error_boundary, handle_errors, os_error_message
from megen.cli.main import app
from megen.errors import MegenError

pytestmark = pytest.mark.cli
runner = CliRunner()
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _one_line(result, code: int) -> str:
    """The single non-empty output line of a failed command (asserting the exit code)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == code, result.output
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def _boom(*args, **kwargs):
    raise RuntimeError("boom [/bold] in the engine\nsecond line")


def _run_megen(args: list[str], stdout=subprocess.PIPE, env: dict | None = None, code: str = ""):
    """Run ``megen`` in a fresh interpreter (``code`` runs first, e.g. to patch a function)."""
    script = f"import sys{chr(10)}{code}{chr(10)}from megen.cli.main import main{chr(10)}sys.argv = ['megen', *sys.argv[1:]]{chr(10)}main()"
    full_env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", **(env or {})}
    full_env.pop("MEGEN_DEBUG", None) if env is None or "MEGEN_DEBUG" not in env else None
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=full_env,
        timeout=300,
    )


# --- the boundary itself ----------------------------------------------------------------------------


def test_internal_error_is_one_line_exit_1_without_traceback(monkeypatch) -> None:
    monkeypatch.delenv("MEGEN_DEBUG", raising=False)
    monkeypatch.setattr("megen.protocols.builders.build_plan", _boom)
    line = _one_line(runner.invoke(app, ["protocols"]), 1)
    assert line == (
        "internal error: RuntimeError: boom [/bold] in the engine second line "
        "(run with --debug for the traceback)"
    )


@pytest.mark.parametrize("exc", [ValueError("bad value"), KeyError("key"), TypeError("t")])
def test_value_and_key_errors_are_internal_not_usage(monkeypatch, exc) -> None:
    monkeypatch.delenv("MEGEN_DEBUG", raising=False)

    def raise_it(*args, **kwargs):
        raise exc

    monkeypatch.setattr("megen.protocols.builders.build_plan", raise_it)
    assert _one_line(runner.invoke(app, ["protocols"]), 1).startswith(
        f"internal error: {type(exc).__name__}: "
    )


def test_debug_option_and_env_reraise(monkeypatch) -> None:
    monkeypatch.delenv("MEGEN_DEBUG", raising=False)
    monkeypatch.setattr("megen.protocols.builders.build_plan", _boom)
    result = runner.invoke(app, ["--debug", "protocols"])
    assert isinstance(result.exception, RuntimeError) and "internal error" not in result.output
    result = runner.invoke(app, ["protocols"], env={"MEGEN_DEBUG": "1"})
    assert isinstance(result.exception, RuntimeError)
    result = runner.invoke(app, ["protocols"], env={"MEGEN_DEBUG": "0"})
    assert result.exit_code == 1 and result.exception is not None
    assert "internal error" in result.output


def test_traceback_only_with_debug_in_a_real_process() -> None:
    """``main()`` (the console script) re-raises with --debug; without it see the test above."""
    patch = "import megen.protocols.builders as b\nb.build_plan = lambda *a, **k: 1 / 0"
    loud = _run_megen(["--debug", "protocols", "--json"], code=patch)
    assert loud.returncode == 1 and b"Traceback (most recent call last)" in loud.stderr
    assert loud.stderr.decode().strip().splitlines()[-1] == "ZeroDivisionError: division by zero"
    assert b"internal error" not in loud.stderr


def test_megen_error_prints_user_text_literally() -> None:
    line = _one_line(runner.invoke(app, ["link", "--channel", "[/bold]x[red]"]), 2)
    assert line == "Error: unknown channel '[/bold]x[red]'; choose awgn, rayleigh or rician"


def test_usage_errors_stay_exit_2() -> None:
    result = runner.invoke(app, ["link", "--bits", "many"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert runner.invoke(app, ["link", "--build-mcs-table"]).exit_code == 2  # moved to `megen mcs`
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (
            OSError(28, "No space left on device", "/dev/full"),
            "cannot write /dev/full: No space left on device",
        ),
        (
            PermissionError(13, "Permission denied", "/ro/plot.png"),
            "cannot open /ro/plot.png: Permission denied",
        ),
        (IsADirectoryError(21, "Is a directory", "out"), "cannot open out: Is a directory"),
        (OSError(5, "Input/output error"), "input/output error: Input/output error"),
    ],
)
def test_os_errors_become_one_line_exit_2(exc: OSError, message: str) -> None:
    assert os_error_message(exc) == message

    @handle_errors
    def command() -> None:
        raise exc

    test_app = typer.Typer()
    test_app.command()(command)
    assert _one_line(runner.invoke(test_app, []), 2) == f"Error: {message}"


def test_boundary_passes_exits_through() -> None:
    with pytest.raises(typer.Exit) as info, error_boundary(debug=False):
        raise typer.Exit(3)
    assert info.value.exit_code == 3
    with pytest.raises(typer.Exit) as info, error_boundary(debug=False):
        raise MegenError("bad")
    assert info.value.exit_code == 2


# --- writing -----------------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_stdout_is_one_line_exit_2_in_a_real_process() -> None:
    with open("/dev/full", "wb") as full:
        result = _run_megen(["link", "--bits", "200", "--json"], stdout=full)
    assert result.returncode == 2, result.stderr
    assert result.stderr.decode().strip().splitlines() == [
        "Error: cannot write to standard output: No space left on device"
    ]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize(
    "args", [["mcs"], ["mcs", "--json"], ["protocols", "--json"], ["link", "--bits", "9"]]
)
def test_full_stdout_in_process(monkeypatch, capsys, args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        code = app(args, standalone_mode=False)
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "Error: cannot write to standard output: No space left on device"
    ]


def test_plot_into_unwritable_place_is_one_line_exit_2(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    result = runner.invoke(app, ["link", "--bits", "200", "--plot", str(blocker / "ber.png")])
    assert _one_line_error_mentions(result, str(blocker))
    assert blocker.read_text() == "keep me"
    assert "is a folder" in _one_line(runner.invoke(app, ["link", "--plot", str(tmp_path)]), 2)


def _one_line_error_mentions(result, text: str) -> bool:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    return lines[0].startswith("Error: ") and text in lines[0]


# --- reliability defects -----------------------------------------------------------------------------


def test_plan_with_wrong_types_exits_2_naming_the_field(tmp_path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text('[[ops]]\nop = "stage"\nkind = "D"\nnode = "ES1"\nstart = true\n')
    out = tmp_path / "out.png"
    args = ["generate", "--prompt", "a bag", "--steps", "2", "--plan", str(plan), "--out", str(out)]
    line = _one_line(runner.invoke(app, args), 2)
    assert "field 'start' must be an integer, got True" in line
    assert not out.exists()


def test_profiles_naming_a_folder_exits_2(tmp_path) -> None:
    args = [
        "generate",
        "--prompt",
        "a bag",
        "--steps",
        "2",
        "--protocol",
        "CIAG",
        "--profiles",
        str(tmp_path),
    ]
    assert "is a folder" in _one_line(runner.invoke(app, [*args, "--out", str(tmp_path / "o.png")]), 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "task.steps (--steps): Input should be greater than or equal to 1"),
        (["--steps", "1001"], "--steps"),
        (["--strength", "1.5"], "task.strength (--strength): Input should be less than or equal to 1"),
        (["--strength", "nan"], "--strength"),
        (["--num-es", "9"], "protocol.num_es (--num-es)"),
    ],
)
def test_protocols_bad_options_exit_2(args: list[str], message: str) -> None:
    assert message in _one_line(runner.invoke(app, ["protocols", *args]), 2)


def test_protocols_text_to_image_ignores_strength() -> None:
    result = runner.invoke(app, ["protocols", "--text-to-image", "--strength", "1.5", "--json"])
    assert result.exit_code == 0, result.output
