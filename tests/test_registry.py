import subprocess
import sys

import pytest

from evalharness import plugins
from evalharness.registry import Registry, RegistryError


def test_unknown_name_suggests_the_closest():
    reg = Registry("losses")
    reg.add("dpo", "trainers.losses.dpo:DPO")
    reg.add("ipo", "trainers.losses.dpo:IPO")
    with pytest.raises(RegistryError, match=r"unknown loss 'dpoo'; did you mean 'dpo'"):
        reg.get("dpoo")
    with pytest.raises(RegistryError, match="known: dpo, ipo"):
        reg.get("zzzzzz")


def test_entries_are_lazy_and_broken_ones_name_their_plugin():
    reg = Registry("judges")
    reg.add("broken", "no_such_module_xyz:thing", source="my-plugin")
    assert reg.names() == ["broken"]  # listing does not import
    with pytest.raises(RegistryError, match="plugin 'my-plugin' failed to load"):
        reg.get("broken")


def test_double_registration_is_an_error():
    reg = Registry("losses")
    reg.add("dpo", object())
    with pytest.raises(RegistryError, match="registered twice"):
        reg.add("dpo", object(), source="other")


def test_builtin_losses_go_through_the_entry_point_hook():
    from importlib.metadata import entry_points

    values = {ep.value for ep in entry_points(group="evalharness.losses")}
    assert "trainers.losses:register" in values
    names = plugins.registry("losses").names()
    for required in ["sft", "dpo", "ipo", "unlikelihood", "exmate", "sr-dpo", "sr-ipo", "e-dpo", "exo-pref", "exo-rw",
                     "dpo-rw", "cdpo", "robust-dpo", "hinge", "simpo", "cpo", "orpo", "r-dpo", "rrhf", "slic-hf",
                     "kto", "bco-pair", "beta-dpo", "tr-dpo", "bradley-terry"]:
        assert required in names


@pytest.mark.parametrize("kind, hook, names", [
    ("judges", "judges:register", ["reward-model", "pairrm", "llm", "oracle", "gpt-4", "gpt-4o"]),
    ("generators", "evalharness.generation:register", ["hf", "vllm"]),
])
def test_each_package_registers_its_own_builtins_through_its_entry_point(kind, hook, names):
    import inspect
    from importlib.metadata import entry_points

    assert hook in {ep.value for ep in entry_points(group=f"evalharness.{kind}")}
    assert plugins._BUILTIN_HOOKS[kind] == hook
    reg = plugins.registry(kind)
    source = inspect.getsource(plugins)
    for name in names:
        entry = reg.entry(name)
        assert entry.source == "builtin"
        # the core names no judge or generator: neither its registered name nor where it lives
        assert f'"{name}"' not in source
        if isinstance(entry.target, str):
            assert entry.target.partition(":")[0] not in source


class _FakeEntryPoint:
    def __init__(self, name, value, fn):
        self.name, self.value, self._fn = name, value, fn

    def load(self):
        return self._fn


def test_third_party_plugin_registers_and_a_failing_one_is_isolated(monkeypatch):
    def good(reg):
        reg.add("my-loss", "trainers.losses.dpo:DPO", summary="a plugin loss")

    def bad(reg):
        raise ImportError("missing dependency foo")

    def fake_entry_points(group):
        if group == "evalharness.losses":
            return [_FakeEntryPoint("builtins", "trainers.losses:register", __import__("trainers.losses").losses.register),
                    _FakeEntryPoint("good-plugin", "good:register", good),
                    _FakeEntryPoint("bad-plugin", "bad:register", bad)]
        return []

    monkeypatch.setattr(plugins, "entry_points", fake_entry_points)
    plugins.reset()
    try:
        reg = plugins.registry("losses")
        assert reg.entry("my-loss").source == "good-plugin"
        assert reg.entry("dpo").source == "builtin"
        assert any("bad-plugin" in e and "missing dependency foo" in e for e in plugins.PLUGIN_ERRORS)
    finally:
        plugins.reset()


def test_help_imports_neither_torch_nor_vllm():
    code = "import sys, evalharness.cli; print('torch' in sys.modules, 'vllm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
