"""learnkit's model zoo: the registry for plugin authors, and the built-in archs.

A plugin package declares an entry point in the group ``learnkit.zoo`` naming a module; importing
that module registers its archs::

    # pyproject.toml of the plugin:  [project.entry-points."learnkit.zoo"]  mynets = "mynets.zoo"
    from learnkit.zoo import register

    @register("my_net", cut=-1, meta={"description": "my net", "min_size": 32})
    def my_net(n_out: int) -> nn.Module: ...

Importing this package imports no torch.
"""

from learnkit.registry import ArchEntry, create, get, names, plugin_errors, register

__all__ = ["ArchEntry", "create", "get", "names", "plugin_errors", "register"]
