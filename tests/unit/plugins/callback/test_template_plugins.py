"""terafleet.cluster.template_plugins: a process forked after the warm-up loads no Jinja plugin again."""

import configparser
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO_ROOT

# Runs in a fresh interpreter with the collection loader installed as ansible-playbook installs it; forks
# a child that looks up a builtin filter, a builtin test and one of this collection's filters, and prints
# how many modules the child had to import for them.
SCRIPT = textwrap.dedent("""
    import os, sys
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
    _AnsibleCollectionFinder(paths=[{collections!r}])._install()
    from ansible.plugins.loader import filter_loader, test_loader
    from ansible_collections.terafleet.cluster.plugins.callback import template_plugins
    if {warm}:
        print("loaded", template_plugins.load(), flush=True)
    read, write = os.pipe()
    if os.fork() == 0:
        try:
            before = set(sys.modules)
            filter_loader.get_with_context("ansible.builtin.to_json")
            test_loader.get_with_context("ansible.builtin.match")
            plan = filter_loader.get_with_context("terafleet.cluster.instance_plan").object
            assert plan.ansible_name == "terafleet.cluster.instance_plan", plan
            os.write(write, str(len(set(sys.modules) - before)).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.wait()
    print("imported", os.read(read, 64).decode() or "failed")
""")


def _child_imports(warm: bool) -> tuple[int, int]:
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(collections=str(REPO_ROOT / ".collections"),
                                                                  warm=warm)],
                            capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    figures = dict(line.split() for line in result.stdout.splitlines())
    return int(figures.get("loaded", 0)), int(figures["imported"])


def test_forked_process_imports_nothing_after_the_warm_up():
    loaded, imported = _child_imports(warm=True)
    assert loaded > 50  # ansible-core's filters and tests, under every name each answers to
    assert imported == 0


def test_without_the_warm_up_the_forked_process_loads_the_plugins():
    # The control: the lookups above do import plugin modules in a process that did not warm up, so the
    # test above would see them if the warm-up stopped covering one.
    _, imported = _child_imports(warm=False)
    assert imported > 0


def test_a_plugin_that_fails_to_load_does_not_stop_the_run(monkeypatch):
    from ansible_collections.terafleet.cluster.plugins.callback import template_plugins

    class Broken:
        def all(self):
            raise RuntimeError("a broken filter plugin")

        def get_with_context(self, name):
            raise KeyError(name)

    monkeypatch.setattr(template_plugins, "filter_loader", Broken())
    monkeypatch.setattr(template_plugins, "test_loader", Broken())
    assert template_plugins.load() == 0


@pytest.mark.parametrize("config", ["ansible.cfg"])
def test_the_repository_configuration_enables_it(config):
    parser = configparser.ConfigParser()
    parser.read(REPO_ROOT / config)
    enabled = [name.strip() for name in parser["defaults"]["callbacks_enabled"].split(",")]
    assert "terafleet.cluster.template_plugins" in enabled
