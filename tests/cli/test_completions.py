"""The checked-in completion scripts match the app's, and completion answers without torch."""

from pathlib import Path

import pytest

from learnkit.cli.completions import FILES, completion_script

from .test_startup import _probe

COMPLETIONS = Path(__file__).resolve().parents[2] / "completions"


@pytest.mark.parametrize("shell", sorted(FILES))
def test_checked_in_script_is_current(shell):
    path = COMPLETIONS / FILES[shell]
    assert path.read_text() == completion_script(shell), (
        f"{path} is stale: run python -m learnkit.cli.completions completions/"
    )


def test_zsh_completes_commands_and_archs():
    env = {"_LEARNKIT_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "learnkit fit --arch resnet"}
    out, heavy = _probe(env=env)
    assert "resnet18" in out and heavy == ""
    out, _ = _probe(env={"_LEARNKIT_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "learnkit va"})
    assert "validate" in out


def test_model_completion_lists_checkpoints(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("last.safetensors", "last.opt.safetensors", "best.safetensors"):
        (models / name).write_bytes(b"")
    words = f"learnkit validate data --path {tmp_path} --model "
    out, heavy = _probe(env={"_LEARNKIT_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": "6"})
    assert out.split() == ["best", "last"] and heavy == ""
