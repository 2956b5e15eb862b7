"""``learnkit zoo list`` and ``learnkit zoo show``: the archs of the model zoo and their layer groups."""

from typing import Annotated

import typer

from learnkit.class_names import MAX_CLASSES

from .basic_options import JsonOpt, complete_arch
from .helpfmt import LearnkitCommand, LearnkitSubgroup
from .render import make_console, render_result, render_rows

zoo_app = typer.Typer(
    name="zoo",
    cls=LearnkitSubgroup,
    help="The model zoo: built-in archs and those of installed plugins.",
    no_args_is_help=True,
)


@zoo_app.command("list", cls=LearnkitCommand)
def zoo_list(
    pattern: Annotated[
        str, typer.Argument(metavar="[PATTERN]", help="Only names matching this pattern, e.g. 'resnet*'.")
    ] = "*",
    count: Annotated[
        bool, typer.Option("--count", help="Build each arch to count what its meta does not say (slow).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List the archs (name, parameters with 1000 outputs, layer groups, source plugin)."""
    from learnkit.jobs.zoo import list_archs

    rows = list_archs(pattern, build=count)
    columns = ["name", "params", "groups", "source", "description"]
    render_rows(rows, make_console(), as_json=as_json, columns=columns)


@zoo_app.command("show", cls=LearnkitCommand)
def zoo_show(
    name: Annotated[str, typer.Argument(metavar="NAME", help="An arch name.", autocompletion=complete_arch)],
    n_out: Annotated[
        int, typer.Option("--n-out", min=1, max=MAX_CLASSES, help="Outputs of the new head.")
    ] = 10,
    unet: Annotated[
        bool, typer.Option("--unet", help="Show the split of a U-Net over this encoder.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show NAME's layer groups, layer by layer, as a Learner's optimizer receives them."""
    from learnkit.jobs.zoo import show_arch

    result = show_arch(name, n_out=n_out, unet=unet)
    console = make_console()
    if as_json:
        render_result(result, console, as_json=True)
        return
    rows = [{"group": g["group"], **layer} for g in result["groups"] for layer in g["layers"]]
    render_rows(rows, console, columns=["group", "name", "layer", "params"])
    console.out("")
    totals = [
        {"group": g["group"], "params": g["params"], "layers": len(g["layers"])} for g in result["groups"]
    ]
    render_rows(totals, console, columns=["group", "layers", "params"])
    console.out("")
    render_result(result, console, skip=("groups",))
