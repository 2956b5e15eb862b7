"""``learnkit --help`` and TAB completion import neither torch, torchvision, matplotlib nor pydantic."""

import inspect
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "matplotlib", "pydantic")

_PROBE = """
import sys
from learnkit.cli.app import main
sys.argv = ["learnkit", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def _probe(*args: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """Run the CLI in a fresh interpreter; return (stdout, the heavy modules it imported)."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    heavy = [line for line in proc.stderr.splitlines() if line.startswith("HEAVY=")]
    assert heavy, proc.stderr
    return proc.stdout, heavy[-1].removeprefix("HEAVY=")


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["fit", "--help"],
        ["fit-one-cycle", "--help"],
        ["lr-find", "--help"],
        ["validate", "--help"],
        ["predict", "--help"],
        ["tta", "--help"],
        ["summary", "--help"],
        ["export", "--help"],
        ["report", "--help"],
    ],
)
def test_help_imports_no_torch(args):
    out, heavy = _probe(*args)
    assert "Usage" in out
    assert heavy == ""


def test_arch_completion_imports_no_torch():
    env = {
        "_LEARNKIT_COMPLETE": "complete_bash",
        "COMP_WORDS": "learnkit fit --arch simple",
        "COMP_CWORD": "3",
    }
    out, heavy = _probe(env=env)
    assert "simple_cnn" in out.split()
    assert heavy == ""


@pytest.mark.parametrize("command", ["fit", "fit-one-cycle", "lr-find", "summary"])
def test_every_zoo_name_completes_without_torch(command):
    """An empty ``--arch`` word lists the whole zoo (built-ins and plugins), from the registry."""
    from learnkit import registry

    env = {
        "_LEARNKIT_COMPLETE": "complete_bash",
        "COMP_WORDS": f"learnkit {command} --arch ",
        "COMP_CWORD": "3",
    }
    out, heavy = _probe(env=env)
    assert set(out.split()) == set(registry.complete(""))  # the eager archs and the families' prefixes
    assert set(registry.names()) <= set(out.split())
    assert {"resnet18", "simple_cnn", "mobilenet_v3_small", "timm/"} <= set(out.split())
    assert heavy == ""


_LOADED = """
import sys
from learnkit.cli.app import main
sys.argv = ["learnkit", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("LOADED=" + ",".join(sorted(m for m in sys.modules if m.startswith(("learnkit.cli.", "pydantic",
      "typer.rich_utils")))), file=sys.stderr)
"""


def _loaded(*args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", _LOADED, *args], capture_output=True, text=True, timeout=60)
    line = [x for x in proc.stderr.splitlines() if x.startswith("LOADED=")][-1]
    return set(line.removeprefix("LOADED=").split(","))


def test_root_help_imports_no_command_and_no_pydantic():
    loaded = _loaded("--help")
    from learnkit.cli.app import COMMANDS

    assert not {f"learnkit.cli.{module}" for module, _, _ in COMMANDS.values()} & loaded
    assert not {m for m in loaded if m.startswith(("pydantic", "typer.rich_utils"))}


@pytest.mark.parametrize("args", [["version"], ["zoo", "list"], ["validate", "--help"]])
def test_a_command_imports_only_its_own_module_and_no_pydantic(args):
    loaded = _loaded(*args)
    from learnkit.cli.app import COMMANDS

    own = COMMANDS[args[0]][0]
    others = {f"learnkit.cli.{module}" for module, _, _ in COMMANDS.values() if module != own}
    assert not others & loaded, others & loaded
    assert not {m for m in loaded if m.startswith("pydantic")}


def test_the_root_help_lines_are_the_commands_own():
    """The one-line help the root's --help shows (written in COMMANDS, so that no command is imported
    for it) is each command's own."""
    from typer.main import get_command
    from typer.testing import CliRunner

    from learnkit.cli.app import COMMANDS, app

    group = get_command(app)
    ctx = group.make_context("learnkit", ["version"])
    for name, (_, _, line) in COMMANDS.items():
        first = inspect.cleandoc(group.get_command(ctx, name).help or "").split("\n\n")[0]
        assert " ".join(first.split()) == line, name
    assert CliRunner().invoke(app, ["--help"]).stdout.count("\n") > 10


def test_a_training_command_with_numbers_reads_them_without_pydantic(tmp_path):
    """Numbers on the command line are read as the adapter reads them, without importing pydantic
    (about 0.15 s of every command); a number pydantic reads and the plain reading does not
    ("1_000") still goes to it."""
    args = ["fit", "sample:shapes", "--arch", "simple_cnn", "--bs", "12", "--lr", "1.5e-3", "--size", "+32",
            "--mixup", ".4", "--print-config"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", _LOADED, *args], capture_output=True, text=True, timeout=60)
    loaded = [x for x in proc.stderr.splitlines() if x.startswith("LOADED=")][-1]
    assert "pydantic" not in loaded
    assert "bs: 12\n" in proc.stdout and "size: 32\n" in proc.stdout and "mixup: 0.4\n" in proc.stdout
    assert "lr: 0.0015\n" in proc.stdout, proc.stdout
    odd = subprocess.run([sys.executable, "-c", _LOADED, *args[:4], "--bs", "1_000", "--print-config"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert odd.returncode == 0 and "bs: 1000\n" in odd.stdout
