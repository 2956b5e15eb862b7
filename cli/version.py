"""``learnkit version``: the versions that matter when reporting a problem."""

from .options import JsonOpt
from .render import make_console, render_result


def version(as_json: JsonOpt = False) -> None:
    """Print the versions of learnkit, torch, torchvision and Python, and the devices seen."""
    from learnkit.jobs import info

    render_result(info.versions(), make_console(), as_json=as_json)
