"""Plug-in registry: built-ins through the hooks, entry points, duplicate and unknown names."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from conftest import run_cli

from distshot.core.contracts import Capabilities, EngineConfig
from distshot.core.errors import DuplicatePlugin, UnknownPlugin
from distshot.plugins.hookspecs import hookimpl
from distshot.plugins.manager import Registry, storage_scheme


def test_builtins_register_through_the_hooks() -> None:
    registry = Registry(entry_points=False)
    assert {"null", "playwright", "pyppeteer"} <= set(registry.engines)
    assert registry.engines["playwright"].plugin == "distshot.engines.playwright"
    assert "file" in registry.storages


def test_unknown_names_list_what_is_installed() -> None:
    registry = Registry(entry_points=False)
    with pytest.raises(UnknownPlugin) as info:
        registry.engine_entry("nope")
    assert "null" in info.value.message and "playwright" in info.value.message
    with pytest.raises(UnknownPlugin) as info:
        registry.storage_entry("gopher://x")
    assert "file" in info.value.message


def test_a_duplicate_engine_name_is_one_clear_error() -> None:
    plugin = types.ModuleType("copycat")

    @hookimpl
    def distshot_engines(register):  # type: ignore[no-untyped-def]
        register("null", lambda config: None, Capabilities(options=frozenset()))

    plugin.distshot_engines = distshot_engines  # type: ignore[attr-defined]
    with pytest.raises(DuplicatePlugin) as info:
        Registry(entry_points=False, extra_plugins=(plugin,))
    assert "'null' is registered twice" in info.value.message
    assert "distshot.engines.null" in info.value.message


def test_entry_point_plugins_are_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an installed distribution declaring [project.entry-points.distshot]
    (tmp_path / "shiny_engine.py").write_text(
        "from distshot.plugins.hookspecs import hookimpl\n"
        "from distshot.core.contracts import Capabilities\n"
        "from distshot.engines.null import NullEngine\n"
        "@hookimpl\n"
        "def distshot_engines(register):\n"
        "    caps = Capabilities(options=frozenset(), description='shiny')\n"
        "    register('shiny', lambda config: NullEngine(), caps)\n"
    )
    dist = tmp_path / "shiny_engine-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shiny-engine\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[distshot]\nshiny = shiny_engine\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # When the registry loads entry points, then the engine is there and works.
    registry = Registry()
    assert registry.engines["shiny"].plugin.startswith("shiny")
    assert registry.create_engine("shiny", EngineConfig()).name == "null"
    sys.modules.pop("shiny_engine", None)


def test_storage_scheme_of_paths_and_urls() -> None:
    assert storage_scheme("shots") == "file"
    assert storage_scheme("/abs/shots") == "file"
    assert storage_scheme("file:///abs") == "file"
    assert storage_scheme("s3://bucket/prefix") == "s3"


def test_engines_command_lists_capabilities() -> None:
    result = run_cli("engines")
    assert result.returncode == 0
    lines = {
        line.split()[0]: line
        for line in result.stdout.splitlines()
        if line and not line[0].isspace()
    }
    # Each engine says what it honours: every option, or the lists of both
    assert "formats: jpeg, pdf, png, webp" in lines["playwright"]
    assert "honours every option" in lines["playwright"]
    honoured, rejected = lines["null"].split("honours: ")[1].split("; rejects: ")
    assert "width" in honoured and "timeout" in honoured
    assert "full_page" in rejected and "color_scheme" in rejected
    storages = run_cli("storages")
    assert storages.returncode == 0 and storages.stdout.split()[0] == "file"


def test_the_example_third_party_engine_is_listed_from_its_entry_point() -> None:
    # Given examples/distshot-engine-example installed as a package (make venv does it)
    result = run_cli("engines")
    # Then `distshot engines` lists its engine, registered by its own plug-in module
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert lines["cdp"].rstrip().endswith("[cdp]")
    assert "DevTools pipe" in result.stdout
    # and the built-in browser engines are there beside it
    assert {"playwright", "pyppeteer", "selenium"} <= set(lines)
