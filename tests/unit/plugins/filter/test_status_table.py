"""status_table: a node's status as lines whose columns line up, whatever the cells' widths."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.terafleet.cluster.plugins.filter.status_table import FilterModule, status_table


def row(gpu_set, gpus, **changes):
    return {"gpu_set": gpu_set, "gpus": gpus, "gpu_use": "37,38", "server": f"terachem-{gpu_set}",
            "server_state": "healthy", "worker": f"worker-{gpu_set}", "worker_state": "idle", "active_tasks": 0,
            "queued": 0, "restarts_docker": 0, "restarts_watchdog": 0, "crash_loop": False, **changes}


STATUS = {"node": "gpu01", "lstor_used": "12%", "lstor_free_gb": "1.8", "retired_scratch": [], "others": [],
          "shared_queue": {"name": "terachem", "ready": 3, "consumers": 0},
          "servers": [row("gpu0-1", "0,1"),
                      row("gpu2-3-with-a-long-name", "2,3", gpu_use="-,-", server_state="unhealthy",
                          worker_state="drained", active_tasks=1, queued=12, restarts_docker=3,
                          restarts_watchdog=5, crash_loop=True)]}


def column_starts(line: str) -> list[int]:
    """Where each cell of a table line starts (cells hold no two spaces in a row)."""
    starts, previous = [], "  "
    for index, char in enumerate(line):
        if char != " " and previous.endswith("  ") or (index == 0 and char != " "):
            starts.append(index)
        previous = (previous + char)[-2:]
    return starts


def test_the_header_names_lstor_the_shared_queue_and_the_columns_line_up():
    lines = status_table(STATUS).splitlines()
    assert lines[0] == "node gpu01: $LSTOR 12% used, 1.8 GB free; queue terachem: 3 waiting, 0 consumers; " \
                       "other containers: -"
    table = lines[1:]
    assert table[0].split("  ")[0] == "GPU set"
    assert len(table) == 3
    # Every line's cells start where the header's columns do.
    assert column_starts(table[1]) == column_starts(table[0]) == column_starts(table[2])
    assert all(line == line.rstrip() for line in lines)
    header, first, second = ([cell.strip() for cell in line.split("  ") if cell.strip()] for line in table)
    assert header == ["GPU set", "GPUs", "GPU %", "server", "health", "worker", "state", "tasks", "queued",
                      "restarts", "watchdog"]
    assert first == ["gpu0-1", "0,1", "37,38", "terachem-gpu0-1", "healthy", "worker-gpu0-1", "idle", "0", "0", "0",
                     "0"]
    assert second[-2:] == ["3", "LOOP 5"] and second[2] == "-,-" and second[6] == "drained"


def test_a_node_without_gpu_sets_or_answers():
    lines = status_table({"node": "head01", "lstor_used": "-", "shared_queue": None, "servers": [],
                          "others": ["terafleet-rabbitmq", "terafleet-redis"],
                          "retired_scratch": ["/lstor/terafleet/scratch/head01-gpu4"]}).splitlines()
    assert lines == ["node head01: no $LSTOR (not a GPU node); queue: not read (no worker here answered); other "
                     "containers: terafleet-rabbitmq terafleet-redis",
                     "retired GPU sets' scratch, kept: /lstor/terafleet/scratch/head01-gpu4",
                     "no GPU set on this node"]


def test_missing_values_print_as_a_dash():
    lines = status_table({**STATUS, "servers": [row("gpu0", "0", gpu_use="", queued=None)]}).splitlines()
    assert lines[-1].split()[2] == "-" and lines[-1].split()[8] == "-"


def test_a_status_without_a_node_is_refused():
    with pytest.raises(AnsibleFilterError, match="takes a node's status with a 'node'"):
        status_table({"servers": []})


def test_registered_as_a_filter():
    assert FilterModule().filters()["status_table"] is status_table
