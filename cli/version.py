"""``learnkit version``: the versions that matter when reporting a problem."""

from typing import Annotated

import typer

from .basic_options import JsonOpt
from .render import make_console, render_result

DevicesOpt = Annotated[bool, typer.Option("--devices", help="Also the accelerators torch sees (slower).")]


def version(
    devices: DevicesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the versions of learnkit, torch, torchvision and Python (--devices: CUDA, MPS)."""
    from learnkit.jobs import info

    render_result(info.versions(devices=devices), make_console(), as_json=as_json)
