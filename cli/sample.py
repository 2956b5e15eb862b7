"""``learnkit sample``: write a built-in sample data set to a folder."""

from typing import Annotated

import typer

from .basic_options import JsonOpt
from .render import make_console, render_result


def sample(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Sample name: shapes or shapes-seg.")],
    folder: Annotated[str, typer.Argument(metavar="DIR", help="Folder to write the images into.")],
    as_json: JsonOpt = False,
) -> None:
    """Write the built-in sample NAME (e.g. shapes) into DIR, ready for `learnkit fit DIR`."""
    from learnkit.jobs import info

    render_result(info.write_sample(name, folder), make_console(), as_json=as_json)
