"""The real tcpb client (PyPI) against the TeraChem stand-in: availability, energy, gradient, busy, crash, hang."""

from __future__ import annotations

import math
import socket
import struct
import time

import pytest
from qcdata import ProgramInput, Structure
from tcpb import TCProtobufClient
from tcpb import terachem_server_pb2 as pb
from tcpb.exceptions import ServerError

from terachem_standin.backends import Job, fake
from terafleet_worker import reference, server

from minicluster import wait_for

WATER_BOHR = [list(row) for row in reference.WATER_BOHR]
CRAWFORD_STO3G_ENERGY = reference.WATER_HF_STO3G_ENERGY


def program_input(geometry, calctype="energy", method="hf", basis="sto-3g", symbols=("O", "H", "H")):
    return ProgramInput(structure=Structure(symbols=list(symbols), geometry=geometry), calctype=calctype,
                        model={"method": method, "basis": basis}, keywords={})


def compute(port, prog_input):
    with TCProtobufClient("127.0.0.1", port) as client:
        return client.compute(prog_input)


@pytest.fixture()
def pair_a(cluster):
    pair = cluster["pairs"]["standin-a"]
    pair.control()
    yield pair
    pair.control()
    wait_for(lambda: pair.standin.reload() or pair.standin.status == "running", 30, "standin-a restart")


def test_available(pair_a):
    with TCProtobufClient("127.0.0.1", pair_a.port) as client:
        assert client.is_available() is True


def test_energy_matches_the_fake_backend_and_depends_on_geometry(pair_a):
    output = compute(pair_a.port, program_input(WATER_BOHR))
    expected = fake(Job(["O", "H", "H"], [x for row in WATER_BOHR for x in row], 0, 1, True, "HF", "sto-3g", False))
    assert output.success
    assert output.data.energy == pytest.approx(expected.energy, abs=1e-12)
    stretched = [WATER_BOHR[0], [1.9, 1.3, 0.0], WATER_BOHR[2]]
    assert compute(pair_a.port, program_input(stretched)).data.energy != pytest.approx(output.data.energy, abs=1e-6)
    assert str(output.provenance.scratch_dir).startswith("server_")


def test_gradient_agrees_with_finite_differences_of_energies(pair_a):
    gradient = compute(pair_a.port, program_input(WATER_BOHR, calctype="gradient")).data.gradient
    assert gradient.shape == (3, 3)
    step = 1e-4
    for atom, axis in ((1, 0), (1, 1), (0, 1)):
        plus = [row[:] for row in WATER_BOHR]
        minus = [row[:] for row in WATER_BOHR]
        plus[atom][axis] += step
        minus[atom][axis] -= step
        numeric = (compute(pair_a.port, program_input(plus)).data.energy
                   - compute(pair_a.port, program_input(minus)).data.energy) / (2 * step)
        assert gradient[atom][axis] == pytest.approx(numeric, abs=1e-6)


def test_scratch_layout_like_terachem(pair_a):
    output = compute(pair_a.port, program_input(WATER_BOHR))
    job_dir = output.provenance.scratch_dir
    listing = pair_a.standin.exec_run(["ls", f"/scratch/{job_dir}"]).output.decode().split()
    assert sorted(listing) == ["geom.xyz", "scr", "tc.out"]
    tc_out = pair_a.standin.exec_run(["cat", f"/scratch/{job_dir}/tc.out"]).output.decode()
    assert "GPUs: 0" in tc_out and "FINAL ENERGY" in tc_out


def test_busy_while_another_clients_job_runs(pair_a):
    pair_a.control(job_seconds=9)  # longer than tcpb's ten 0.5 s retries
    header = struct.Struct(">II")
    job = pb.JobInput(mol=pb.Mol(atoms=["H", "H"], xyz=[0, 0, 0, 0, 0, 1.4], units=pb.Mol.UnitType.BOHR,
                                 multiplicity=1, closed=True, restricted=True), basis="sto-3g")
    with socket.create_connection(("127.0.0.1", pair_a.port), timeout=5) as conn:
        body = job.SerializeToString()
        conn.sendall(header.pack(pb.JOBINPUT, len(body)) + body)
        kind, size = header.unpack(conn.recv(8))
        accepted = pb.Status()
        accepted.ParseFromString(conn.recv(size))
        assert kind == pb.STATUS and accepted.accepted
    # The first client left with its job still running: the next client finds the server busy.
    with TCProtobufClient("127.0.0.1", pair_a.port) as client:
        assert client.is_available() is False
        with pytest.raises(ServerError, match="busy"):
            client.compute(program_input(WATER_BOHR))
    wait_for(lambda: not server.status("127.0.0.1", pair_a.port, 5), 20, "the orphan job to end")


def test_crash_mid_job_closes_the_socket_and_docker_restarts_it(pair_a):
    pair_a.standin.reload()
    restarts = pair_a.standin.attrs["RestartCount"]
    pair_a.control(crash_mid_job=True, job_seconds=1)
    with pytest.raises(ServerError, match="closed"):
        compute(pair_a.port, program_input(WATER_BOHR))
    wait_for(lambda: pair_a.standin.reload() or (pair_a.standin.attrs["RestartCount"] > restarts
                                                 and pair_a.standin.status == "running"), 30, "restart")
    pair_a.control()
    wait_for(lambda: server.status("127.0.0.1", pair_a.port, 2) is False, 30, "the restarted server")
    assert compute(pair_a.port, program_input(WATER_BOHR)).success


def test_hang_accepts_connections_but_never_answers(pair_a):
    pair_a.control(hang=True)
    started = time.monotonic()
    with pytest.raises(server.ServerUnavailable, match="did not answer STATUS"):
        server.status("127.0.0.1", pair_a.port, timeout=2)
    assert time.monotonic() - started >= 2
    with socket.create_connection(("127.0.0.1", pair_a.port), timeout=2):
        pass  # the port is open all the same, which is why health checks must do a round-trip


def test_real_chemistry_water_sto3g_matches_crawford(cluster):
    chem = cluster["pairs"]["standin-chem"]
    output = compute(chem.port, program_input(WATER_BOHR))
    assert output.success
    assert math.isclose(output.data.energy, CRAWFORD_STO3G_ENERGY, abs_tol=1e-6), output.data.energy
    gradient = compute(chem.port, program_input(WATER_BOHR, calctype="gradient")).data.gradient
    assert abs(gradient.sum()) < 1e-6  # no net force on an isolated molecule
    assert gradient[0][1] == pytest.approx(-gradient[1][1] - gradient[2][1], abs=1e-9)
