"""The README's command block, run top to bottom in an empty folder (issue 25): every command
exits 0, each training command gets a run folder of its own under runs/, nothing lands in the
current folder, and the commands that read a model say which run they used."""

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from .conftest import _env, learnkit_exe

README = Path(__file__).resolve().parents[2] / "README.md"
TRAINING = ("lr-find", "fit", "fit-one-cycle", "unet")


def readme_commands() -> list[str]:
    """The commands of the README's first block under "The command line", one a line (``;`` splits)."""
    text = README.read_text()
    block = text[text.index("## The command line") :]
    block = block[block.index("```bash\n") + 8 :]
    block = block[: block.index("```")]
    commands = []
    for line in block.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        commands += [part.strip() for part in line.split(" ; ") if part.strip()]
    return commands


def quick(command: str) -> str:
    """A training command made quick for the test: simple_cnn at 32 px, one epoch."""
    words = shlex.split(command)
    if len(words) < 2 or words[0] != "learnkit" or words[1] not in TRAINING:
        return command
    command = command.replace("--arch resnet18", "--arch simple_cnn")
    command = re.sub(r"--epochs \d+", "--epochs 1", command)
    return f"{command} --size 32"


def test_the_readme_block_is_a_runnable_script():
    commands = readme_commands()
    assert commands[0].startswith("learnkit sample shapes data")
    assert all(c.startswith(("learnkit ", "find ")) for c in commands), commands


@pytest.mark.slow
def test_the_readme_block_runs_top_to_bottom_in_an_empty_folder(tmp_path):
    exe = str(Path(learnkit_exe()).parent)
    env = _env() | {"OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{exe}:{env.get('PATH', '')}"
    notes = {}
    for command in readme_commands():
        proc = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {quick(command)}"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, f"{command}: exit {proc.returncode}: {proc.stderr[-600:]}"
        notes[command] = proc.stderr
    for name in ("models", "plots", "config.yaml", "history.csv", ".learnkit.lock"):
        assert not (tmp_path / name).exists(), f"a command wrote ./{name}"
    for run in ("fit-one-cycle/1", "fit/1", "unet/1"):
        assert (tmp_path / "runs" / run / "models" / "last.safetensors").is_file(), run
    assert (tmp_path / "runs" / "lr-find" / "1" / "plots" / "lr_find.png").is_file()
    said = [c for c, err in notes.items() if "note: using the latest" in err]
    assert any("validate" in c for c in said) and any("predict" in c for c in said), said
    assert "runs/fit/1" in next(err for c, err in notes.items() if c.startswith("learnkit validate"))
    assert "runs/unet/1" in next(err for c, err in notes.items() if c.startswith("learnkit export"))
    assert (tmp_path / "runs" / "unet" / "1" / "report.html").is_file()
