"""Load the Jinja filter and test plugins once in the controller, before any task forks a worker."""

from __future__ import annotations

DOCUMENTATION = r"""
name: template_plugins
type: aggregate
short_description: Load the Jinja filter and test plugins once, before the first task
version_added: 0.2.0
author: terafleet developers (!UNKNOWN)
description:
  - ansible-core runs every task of every host in a new process forked from the controller, and each of
    those processes looks up the filters and tests its templates use. Until the controller itself has
    looked them up, every one of them loads the Jinja plugins again (ansible-core's own and this
    collection's), and a C(when) or argument using a filter costs a run of terafleet's C(site.yml) several
    milliseconds of CPU per host and task.
  - When the playbook starts, this plugin loads them in the controller, so that every forked process
    inherits them. It prints nothing and changes no result; if loading a plugin fails, the run goes on as
    without it and the task that uses the plugin reports the error as it would have.
  - Enable it in C(ansible.cfg) with C(callbacks_enabled = terafleet.cluster.template_plugins), as the
    repository's own C(ansible.cfg) does.
requirements:
  - enabled in callbacks_enabled
"""

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import filter_loader, test_loader

# Resolving one of this collection's filters imports every filter module of the collection (ansible-core
# scans them all), which the forked processes then find imported.
_COLLECTION_FILTER = "terafleet.cluster.gpu_sets"


class CallbackModule(CallbackBase):
    """Warm the controller's Jinja plugin caches; no output."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "terafleet.cluster.template_plugins"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_start(self, playbook):
        load()


def load() -> int:
    """Load ansible-core's and this collection's Jinja plugins; return how many loaded. Never raises: a plugin
    that fails to load here fails, as before, in the task that uses it."""
    count = 0
    for plugins in (filter_loader.all, test_loader.all,
                    lambda: [filter_loader.get_with_context(_COLLECTION_FILTER)]):
        try:
            count += len(list(plugins()))
        except Exception:  # noqa: BLE001 - a broken third-party plugin must not stop the run here
            continue
    return count
