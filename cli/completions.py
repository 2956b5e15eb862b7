"""Shell completion scripts for ``learnkit`` (bash, zsh, fish), as kept in ``completions/``.

The scripts only call ``learnkit`` back with ``_LEARNKIT_COMPLETE`` set; the answers come from the
app itself (command and option names, arch names from the zoo registry), without importing torch.
Regenerate the checked-in copies after changing the app with::

    python -m learnkit.cli.completions completions/
"""

import sys
from pathlib import Path

from typer._completion_shared import get_completion_script  # the scripts --show-completion prints

PROG = "learnkit"
COMPLETE_VAR = "_LEARNKIT_COMPLETE"
FILES = {"bash": "learnkit.bash", "zsh": "_learnkit", "fish": "learnkit.fish"}


def completion_script(shell: str) -> str:
    """The completion script for ``shell`` (``bash``, ``zsh`` or ``fish``), ending in a newline."""
    if shell not in FILES:
        raise ValueError(f"no completion script for {shell!r}; shells: {', '.join(FILES)}")
    return get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell) + "\n"


def write_completions(folder: str | Path) -> list[Path]:
    """Write every shell's script into ``folder``; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for shell, name in FILES.items():
        path = folder / name
        path.write_text(completion_script(shell))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_completions(sys.argv[1] if len(sys.argv) > 1 else "completions"):
        print(path)
