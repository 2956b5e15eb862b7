"""``learnkit summary``: the layers, shapes and parameter counts of an arch or a checkpoint."""

from typing import Annotated

import typer

from learnkit.class_names import MAX_CLASSES

from .options import JsonOpt, SizeOpt, complete_arch
from .render import make_console, render_result
from .runs import RunPathOpt, complete_model, locate
from .trust_size import TrustSizeOpt, apply_trust_size


def summary(
    arch: Annotated[
        str | None, typer.Option("--arch", help="An arch from the zoo.", autocompletion=complete_arch)
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="A checkpoint: a name under PATH/models, a run folder, RUN/models/NAME, or a file.",
            autocompletion=complete_model,
        ),
    ] = None,
    n_out: Annotated[
        int, typer.Option("--n-out", min=1, max=MAX_CLASSES, help="Outputs of the head (with --arch).")
    ] = 10,
    size: SizeOpt = 64,
    path: RunPathOpt = None,
    as_json: JsonOpt = False,
    trust_size: TrustSizeOpt = False,
) -> None:
    """Summarise --arch A (built for --n-out classes) or the checkpoint --model NAME."""
    from learnkit.jobs import info

    apply_trust_size(trust_size)
    if (arch is None) == (model is None):  # before any run is looked for
        from learnkit.errors import UsageError

        raise UsageError("give exactly one of --arch or --model")
    if model is not None:
        model, path = locate(model, path)
    result = info.summary(arch=arch, model=model, n_out=n_out, size=size, path=path)
    console = make_console()
    if as_json:
        render_result(result, console, as_json=True)
        return
    console.out(result["text"] + "\n", highlight=False)
    render_result(result, console, skip=("text", "layers"))
