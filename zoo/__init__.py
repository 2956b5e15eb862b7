"""learnkit's model zoo: the registry for plugin authors, and the built-in archs.

A plugin package declares an entry point in the group ``learnkit.zoo`` naming a module; importing
that module registers its archs::

    # pyproject.toml of the plugin:  [project.entry-points."learnkit.zoo"]  mynets = "mynets.zoo"
    from learnkit.zoo import register

    @register("my_net", cut=-1, meta={"description": "my net", "min_size": 32,
                                      "kwargs": {"width": Kwarg("int", 1, 1024)}})
    def my_net(n_out: int, width: int = 64) -> nn.Module: ...

``meta["kwargs"]`` lists the builder options a checkpoint's ``model_spec`` may carry (only those
that shape the architecture, with their types and ranges); a checkpoint naming any other is
refused before the builder runs (:mod:`learnkit.spec_kwargs`).

Importing this package imports no torch.
"""

from learnkit.registry import ArchEntry, create, get, names, plugin_errors, register
from learnkit.spec_kwargs import Kwarg

__all__ = ["ArchEntry", "Kwarg", "create", "get", "names", "plugin_errors", "register"]
