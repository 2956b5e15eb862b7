"""The registry mechanism: registration, lookup, kwargs, and plugins found through entry points."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from learnkit import registry
from learnkit.errors import UsageError


def _tiny(n_out: int, width: int = 4) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(width), nn.Linear(width, n_out))


def test_register_as_call_and_as_decorator(fresh_registry):
    returned = registry.register("t_call", _tiny, meta={"description": "a call"})

    @registry.register("t_deco", split=lambda m: [m[:2], m[2:]])
    def t_deco(n_out: int) -> nn.Module:
        return _tiny(n_out)

    assert returned is _tiny and t_deco.__name__ == "t_deco"  # the decorator hands the function back
    assert registry.get("t_call").builder is _tiny
    assert registry.get("t_call").description == "a call"
    entry = registry.get("t_deco")
    assert entry.builder is t_deco and entry.cut is None
    assert entry.source == __name__  # registered outside a plugin: the builder's module
    assert len(entry.layer_groups(entry.builder(2))) == 2


def test_duplicate_name_raises(fresh_registry):
    registry.register("t_dup", _tiny)
    with pytest.raises(UsageError, match="'t_dup' is already registered"):
        registry.register("t_dup", _tiny)
    with pytest.raises(UsageError, match="already registered"):
        registry.register("resnet18", _tiny)  # a built-in's name is taken too


@pytest.mark.parametrize("bad", ["", "two words", None])
def test_bad_names_raise(fresh_registry, bad):
    with pytest.raises(UsageError):
        registry.register(bad, _tiny)


def test_names_are_sorted_and_filtered_with_fnmatch(fresh_registry):
    for name in ("t_b2", "t_a1", "t_a2"):
        registry.register(name, _tiny)
    assert registry.names("t_*") == ["t_a1", "t_a2", "t_b2"]
    assert registry.names("t_a?") == ["t_a1", "t_a2"]
    assert registry.names("resnet*") == ["resnet101", "resnet152", "resnet18", "resnet34", "resnet50"]
    assert registry.names() == sorted(registry.names())
    assert registry.names("nothing*") == []


def test_unknown_arch_suggests_close_names():
    with pytest.raises(UsageError) as err:
        registry.get("resnet19")
    message = str(err.value)
    assert message.startswith("unknown arch 'resnet19'; did you mean: resnet18")
    assert message.count(",") == 2 and "\n" not in message  # three close names, one line
    assert err.value.exit_code == 2
    with pytest.raises(UsageError, match="zoo list"):
        registry.get("zzzzzz")


def test_create_drops_none_kwargs_and_refuses_unknown_ones(fresh_registry):
    seen = {}

    @registry.register("t_kw")
    def t_kw(n_out: int, width: int = 7, depth: int = 2) -> nn.Module:
        seen.update(n_out=n_out, width=width, depth=depth)
        return _tiny(n_out, width)

    registry.create("t_kw", 3, width=None, depth=5)  # None: the builder's default stands
    assert seen == {"n_out": 3, "width": 7, "depth": 5}
    with pytest.raises(UsageError, match="takes no option colour .*options: width, depth"):
        registry.create("t_kw", 3, colour="red")


def test_registry_imports_no_torch():
    code = (
        "import sys; import learnkit.registry as r; import learnkit.zoo; "
        "assert 'resnet18' in r.names(); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_uninstalled_checkout_still_has_the_builtins(tmp_path):
    """No dist-info, no editable finder: the registry mounts the checkout's zoo/ as learnkit.zoo."""
    root = Path(__file__).resolve().parents[2]
    code = f"""
import sys, importlib.metadata
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
importlib.metadata.entry_points = lambda **kw: []
sys.path.insert(0, {str(root)!r})
from learnkit import registry
assert "resnet18" in registry.names(), registry.plugin_errors()
assert registry.get("simple_cnn").source == "builtin"
import learnkit.zoo
assert learnkit.zoo.__file__ == {str(root / "zoo" / "__init__.py")!r}
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_builtins_come_from_the_builtin_plugin():
    if _installed():  # learnkit's own pyproject declares them in the plugin group
        eps = importlib.metadata.entry_points(group="learnkit.zoo")
        assert [ep.value for ep in eps if ep.name == "builtin"] == ["learnkit.zoo.builtin"]
    assert {registry.get(n).source for n in ("simple_cnn", "resnet18", "efficientnet_b0")} == {"builtin"}
    assert registry.plugin_errors() == {}


def test_a_plugin_dist_on_sys_path_is_discovered(fresh_registry, make_plugin):
    make_plugin(
        "lk_demo_plugin",
        "lk_demo_plugin_mod",
        """
        from torch import nn
        from learnkit.zoo import register

        @register("demo_net", cut=-1, meta={"description": "a demo", "min_size": 8})
        def demo_net(n_out):
            return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(n_out))
        """,
    )
    registry._reset()  # forget the plugins seen before the dist existed
    assert "demo_net" in registry.names()
    entry = registry.get("demo_net")
    assert entry.source == "lk_demo_plugin" and entry.min_size == 8 and entry.cut == -1
    assert "resnet18" in registry.names()  # the built-ins still load beside it
    assert registry.plugin_errors() == {}


def test_a_broken_plugin_is_reported_and_skipped(fresh_registry, make_plugin):
    make_plugin("lk_broken", "lk_broken_mod", "raise RuntimeError('boom at import')\n")
    registry._reset()
    with pytest.warns(RuntimeWarning, match="plugin 'lk_broken' skipped: RuntimeError: boom at import"):
        names = registry.names()
    assert "simple_cnn" in names
    assert registry.plugin_errors() == {"lk_broken": "RuntimeError: boom at import"}


def test_a_plugin_that_clashes_registers_nothing(fresh_registry, make_plugin):
    make_plugin(
        "lk_clash",
        "lk_clash_mod",
        """
        from learnkit.zoo import register
        register("clash_ok", lambda n_out: None)
        register("simple_cnn", lambda n_out: None)  # taken by the built-ins
        """,
    )
    registry._reset()
    with pytest.warns(
        RuntimeWarning, match="plugin 'lk_clash' skipped: UsageError: arch 'simple_cnn' is already"
    ):
        names = registry.names()
    assert "clash_ok" not in names  # nothing of a refused plugin is half-registered
    assert registry.get("simple_cnn").source == "builtin"
    assert list(registry.plugin_errors()) == ["lk_clash"]


def _installed() -> bool:
    try:
        importlib.metadata.distribution("learnkit")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
