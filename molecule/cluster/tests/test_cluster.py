"""The converged cluster: disjoint GPU sets, own scratch, a protected license, and calculations that
arrive, survive a crashing server and a same-second restart."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from conftest import SETS, inspect

testinfra_hosts = ["ansible://gpu_nodes"]


def hook_indices(host) -> dict[str, list[str]]:
    records = [json.loads(line) for line in
               host.file("/var/log/nvidia-container-toolkit/hook.jsonl").content_string.splitlines()]
    return {r["id"]: r["indices"] for r in records if r["event"] == "start"}


def test_each_server_owns_a_disjoint_gpu_set_asked_for_by_uuid(host):
    uuids = dict(line.split(", ") for line in
                 host.check_output("nvidia-smi --query-gpu=index,uuid --format=csv,noheader").splitlines())
    seen = {}
    recorded = hook_indices(host)
    for gpu_set in SETS:
        config = inspect(host, f"terachem-{gpu_set}")
        requests = config["HostConfig"]["DeviceRequests"]
        assert len(requests) == 1 and requests[0]["Driver"] == "nvidia"
        indices = gpu_set.removeprefix("gpu").split("-")
        assert requests[0]["DeviceIDs"] == [uuids[index] for index in indices]
        assert recorded[config["Id"]] == indices, "the hook saw other GPUs than the container asked for"
        assert config["Config"]["Labels"]["org.terafleet.gpu_set"] == gpu_set
        assert config["Config"]["Labels"]["org.terafleet.gpus"] == ",".join(indices)
        for index in indices:
            assert index not in seen, f"GPU {index} in {seen.get(index)} and terachem-{gpu_set}"
            seen[index] = gpu_set
    assert sorted(seen) == ["0", "1", "2", "3"]


def test_servers_run_under_an_init_that_passes_sigterm_on(host):
    for gpu_set in SETS:
        assert inspect(host, f"terachem-{gpu_set}")["HostConfig"]["Init"] is True
        assert host.check_output(f"docker exec terachem-{gpu_set} cat /proc/1/comm") == "docker-init"


def test_each_server_has_its_own_scratch_directory(host):
    dirs = set()
    for gpu_set in SETS:
        mounts = {m["Destination"]: m for m in inspect(host, f"terachem-{gpu_set}")["Mounts"]}
        volume = json.loads(host.check_output(f"docker volume inspect {mounts['/scratch']['Name']}"))[0]
        directory = volume["Options"]["device"]
        assert directory == f"/lstor/terafleet/scratch/{host.backend.host}-{gpu_set}"
        assert host.check_output(f"ls {directory}").startswith("server_")
        dirs.add(directory)
    assert len(dirs) == len(SETS)


def test_license_is_root_only_and_mounted_read_only(host):
    license_file = host.file("/etc/terafleet/terachem/license.key")
    assert license_file.mode == 0o400 and license_file.user == "root"
    assert "TERACHEM-TEST-LICENSE" in license_file.content_string  # decrypted from Vault on the way
    mounts = {m["Destination"]: m for m in inspect(host, "terachem-gpu0-1")["Mounts"]}
    assert mounts["/opt/terachem/license.key"]["RW"] is False


def test_servers_and_workers_are_healthy_and_paired(host):
    for gpu_set in SETS:
        assert inspect(host, f"terachem-{gpu_set}")["State"]["Health"]["Status"] == "healthy"
        worker = inspect(host, f"worker-{gpu_set}")
        env = dict(item.split("=", 1) for item in worker["Config"]["Env"])
        assert env["TCPB_HOST"] == f"terachem-{gpu_set}"
        assert env["TERAFLEET_QUEUES"] == f"terachem,terachem.{host.backend.host}.{gpu_set}"
        assert worker["Config"]["StopTimeout"] == 120
        mounts = {m["Destination"]: m for m in worker["Mounts"]}
        assert mounts["/scratch"]["RW"] is False


def http(url: str, method: str = "GET", data: bytes | None = None) -> int:
    """The status an anonymous request gets."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_frontend_serves_each_servers_scratch_read_only_as_nobody(host):
    node_ip = host.interface("eth0").addresses[0]  # the node's own address, as a client elsewhere uses
    scratch = f"/lstor/terafleet/scratch/{host.backend.host}-gpu0-1"
    listing = json.load(urllib.request.urlopen(f"http://{node_ip}:8080/", timeout=10))
    run = next(entry["name"] for entry in listing
               if entry["name"].startswith("server_") and entry["type"] == "directory")
    jobs = json.load(urllib.request.urlopen(f"http://{node_ip}:8080/{run}/", timeout=10))
    job = next(entry["name"] for entry in jobs if entry["name"].startswith("job_"))
    assert http(f"http://{node_ip}:8080/{run}/{job}/tc.out") == 200
    # Anonymous writes are refused: the server's root, a job, an upload.
    assert http(f"http://{node_ip}:8080/", "DELETE") == 403
    assert http(f"http://{node_ip}:8080/{run}/{job}/", "DELETE") == 403
    assert http(f"http://{node_ip}:8081/uploads/a/b.txt", "PUT", b"x") == 403
    assert host.file(f"{scratch}/{run}/{job}/tc.out").exists
    assert not host.file(f"/lstor/terafleet/scratch/{host.backend.host}-gpu2-3/uploads").exists
    frontend = inspect(host, "terafleet-frontend")
    assert frontend["Config"]["User"] == "65534:0"
    assert [m["RW"] for m in frontend["Mounts"] if m["Destination"].startswith("/scratch/")] == [False, False]
    uids = [line.split()[1] for line in host.check_output("docker top terafleet-frontend -o pid,uid").splitlines()[1:]]
    assert uids and set(uids) == {"65534"}, uids
