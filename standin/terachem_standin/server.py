"""The TCPB server loop: framing, the STATUS / JOBINPUT / JOBOUTPUT conversation, scratch layout, faults."""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import messages
from .backends import BACKENDS, BOHR_PER_ANGSTROM, CalculationError, Job, Result

pb = messages.load()

log = logging.getLogger("terachem-standin")
HEADER = struct.Struct(">II")
CRASH_EXIT = 134  # what an aborted TeraChem process exits with


@dataclass
class Faults:
    """Fault switches: environment defaults, overridden per job by a JSON control file in the scratch."""

    crash_after_jobs: int = 0  # exit after delivering this many results (0: never)
    crash_on_start: bool = False  # exit right after start-up, as a broken install or license does
    crash_mid_job: bool = False  # exit halfway through the next job
    hang: bool = False  # accept connections and never answer, as an unlicensed TeraChem does
    job_seconds: float = 0.0  # minimum duration of every job

    @classmethod
    def from_env(cls) -> Faults:
        return cls(crash_after_jobs=int(os.environ.get("STANDIN_CRASH_AFTER_JOBS", "0")),
                   crash_mid_job=os.environ.get("STANDIN_CRASH_MID_JOB", "") == "1",
                   crash_on_start=os.environ.get("STANDIN_CRASH_ON_START", "") == "1",
                   hang=os.environ.get("STANDIN_HANG", "") == "1",
                   job_seconds=float(os.environ.get("STANDIN_JOB_SECONDS", "0")))

    def updated(self, control_file: Path) -> Faults:
        try:
            overrides = json.loads(control_file.read_text())
        except (OSError, ValueError):
            return self
        known = {k: v for k, v in overrides.items() if k in self.__dataclass_fields__}
        return Faults(**{**self.__dict__, **known})


def crash(reason: str) -> None:
    """Die the way TeraChem does: the whole process ends at once and every socket closes."""
    log.error("terachem-standin crashing: %s", reason)
    logging.shutdown()
    os._exit(CRASH_EXIT)


class StandinServer:
    def __init__(self, port: int, workdir: Path, backend: str, faults: Faults, control_file: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.compute = BACKENDS[backend]
        self.backend = backend
        self.faults = faults
        self.control_file = control_file
        self.gpus = os.environ.get("NVIDIA_VISIBLE_DEVICES") or os.environ.get("CUDA_VISIBLE_DEVICES") or "none"
        self.server_dir = self.workdir / time.strftime("server_%Y-%m-%d-%H.%M.%S")
        self.jobs_done = 0
        self.job_counter = 0
        self.lock = threading.Lock()
        self.running: threading.Thread | None = None
        self.owner: socket.socket | None = None
        self.result: tuple[pb.JobOutput | None, str | None] | None = None

    # -- start-up ---------------------------------------------------------------------------------------

    def make_server_dir(self) -> None:
        # TeraChem names its scratch by start second and dies if the directory already exists.
        try:
            self.server_dir.mkdir(parents=False)
        except FileExistsError:
            log.error("scratch directory %s already exists; another server started in the same second",
                      self.server_dir)
            sys.exit(1)
        log.info("TeraChem stand-in (%s backend) on port %d, GPUs %s, scratch %s", self.backend, self.port,
                 self.gpus, self.server_dir)

    def serve_forever(self) -> None:
        self.make_server_dir()
        if self.faults.updated(self.control_file).crash_on_start:
            crash("crash_on_start")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", self.port))
        listener.listen(8)
        while True:
            conn, peer = listener.accept()
            log.info("client %s:%d connected", *peer)
            with conn:
                self.serve_client(conn)
            log.info("client %s:%d disconnected", *peer)

    # -- one client at a time ----------------------------------------------------------------------------

    def serve_client(self, conn: socket.socket) -> None:
        while True:
            message = self.receive(conn)
            if message is None:
                with self.lock:
                    if self.owner is conn:
                        self.owner = None
                return
            if self.faults.updated(self.control_file).hang:
                continue  # read and never answer
            kind, payload = message
            if kind == pb.STATUS:
                self.answer_status(conn)
            elif kind == pb.JOBINPUT:
                job_input = pb.JobInput()
                job_input.ParseFromString(payload)
                self.accept_job(conn, job_input)
            else:
                log.warning("ignoring message of type %d", kind)

    @staticmethod
    def receive(conn: socket.socket) -> tuple[int, bytes] | None:
        header = StandinServer.read_exact(conn, HEADER.size)
        if header is None:
            return None
        kind, size = HEADER.unpack(header)
        payload = StandinServer.read_exact(conn, size) if size else b""
        return None if payload is None else (kind, payload)

    @staticmethod
    def read_exact(conn: socket.socket, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            try:
                chunk = conn.recv(size - len(data))
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    @staticmethod
    def send(conn: socket.socket, kind: int, message=None) -> None:
        body = message.SerializeToString() if message is not None else b""
        conn.sendall(HEADER.pack(kind, len(body)) + body)

    def answer_status(self, conn: socket.socket) -> None:
        with self.lock:
            busy = self.running is not None and self.running.is_alive()
            mine = self.owner is conn
            finished = mine and self.result is not None
            if finished:
                output, _ = self.result
                self.result, self.owner, self.running = None, None, None
        if finished:
            self.send(conn, pb.STATUS, pb.Status(busy=True, completed=True))
            self.send(conn, pb.JOBOUTPUT, output)
            self.after_delivery()
        elif mine and busy:
            self.send(conn, pb.STATUS, pb.Status(busy=True, working=True))
        else:
            self.send(conn, pb.STATUS, pb.Status(busy=busy))

    def accept_job(self, conn: socket.socket, job_input: pb.JobInput) -> None:
        with self.lock:
            if self.running is not None and self.running.is_alive():
                self.send(conn, pb.STATUS, pb.Status(busy=True, accepted=False))
                return
            self.job_counter += 1
            number = self.job_counter
            job_dir = self.server_dir / f"job_{number}"
            (job_dir / "scr").mkdir(parents=True)
            self.owner, self.result = conn, None
            self.running = threading.Thread(target=self.run_job, args=(conn, job_input, number, job_dir),
                                            daemon=True)
            self.running.start()
        relative = str(job_dir.relative_to(self.workdir))
        self.send(conn, pb.STATUS, pb.Status(busy=True, accepted=True, job_dir=relative,
                                             job_scr_dir=f"{relative}/scr", server_job_id=number))

    def after_delivery(self) -> None:
        self.jobs_done += 1
        limit = self.faults.updated(self.control_file).crash_after_jobs
        if limit and self.jobs_done >= limit:
            crash(f"crash_after_jobs={limit} reached")

    # -- the calculation -----------------------------------------------------------------------------------

    def run_job(self, conn: socket.socket, job_input: pb.JobInput, number: int, job_dir: Path) -> None:
        faults = self.faults.updated(self.control_file)
        started = time.monotonic()
        job = self.to_job(job_input)
        tc_out = job_dir / "tc.out"
        self.write_geometry(job, job_dir / "geom.xyz")
        with tc_out.open("w") as out:
            out.write(f"TeraChem stand-in ({self.backend} backend), job {number}\n"
                      f"GPUs: {self.gpus}\nMethod: {job.method}  Basis: {job.basis}  "
                      f"Run: {'gradient' if job.gradient else 'energy'}\n")
            out.flush()
            if faults.crash_mid_job:
                time.sleep(max(faults.job_seconds, 0.5) / 2)
                out.write("Segmentation fault (stand-in crash_mid_job)\n")
                out.flush()
                crash(f"crash_mid_job during job {number}")
            try:
                result = self.compute(job)
            except CalculationError as error:
                out.write(f"ERROR: {error}\nJob terminated\n")
                out.flush()
                crash(f"calculation error in job {number}: {error}")
            remaining = faults.job_seconds - (time.monotonic() - started)
            if remaining > 0:
                time.sleep(remaining)
            out.write(f"FINAL ENERGY: {result.energy:.12f} a.u.\n")
            if result.gradient:
                out.write("Gradient units are Hartree/Bohr\n")
                (job_dir / "scr" / "grad.xyz").write_text(" ".join(f"{g:.10f}" for g in result.gradient) + "\n")
            out.write(f"Total processing time: {time.monotonic() - started:.2f} sec\nJob finished\n")
        output = self.to_output(job_input, result, job_dir, number)
        with self.lock:
            if self.owner is conn:
                self.result = (output, None)
            else:
                log.warning("job %d finished after its client left; result dropped", number)
                self.running = None

    @staticmethod
    def to_job(job_input: pb.JobInput) -> Job:
        scale = BOHR_PER_ANGSTROM if job_input.mol.units == pb.Mol.UnitType.ANGSTROM else 1.0
        options = dict(zip(job_input.user_options[::2], job_input.user_options[1::2], strict=False))
        return Job(atoms=list(job_input.mol.atoms), xyz_bohr=[x * scale for x in job_input.mol.xyz],
                   charge=job_input.mol.charge, multiplicity=job_input.mol.multiplicity or 1,
                   restricted=job_input.mol.restricted or not job_input.mol.multiplicity > 1,
                   method=pb.JobInput.MethodType.Name(job_input.method), basis=job_input.basis,
                   gradient=job_input.run == pb.JobInput.RunType.GRADIENT, options=options)

    @staticmethod
    def write_geometry(job: Job, path: Path) -> None:
        lines = [str(len(job.atoms)), "geometry in Angstrom"]
        for i, atom in enumerate(job.atoms):
            x, y, z = (c / BOHR_PER_ANGSTROM for c in job.xyz_bohr[3 * i:3 * i + 3])
            lines.append(f"{atom:<2} {x:16.10f} {y:16.10f} {z:16.10f}")
        path.write_text("\n".join(lines) + "\n")

    def to_output(self, job_input: pb.JobInput, result: Result, job_dir: Path, number: int) -> pb.JobOutput:
        mol = pb.Mol()
        mol.CopyFrom(job_input.mol)
        if mol.units == pb.Mol.UnitType.ANGSTROM:
            del mol.xyz[:]
            mol.xyz.extend(x * BOHR_PER_ANGSTROM for x in job_input.mol.xyz)
            mol.units = pb.Mol.UnitType.BOHR
        relative = str(job_dir.relative_to(self.workdir))
        return pb.JobOutput(mol=mol, energy=[result.energy], gradient=result.gradient, charges=result.charges,
                            dipoles=result.dipoles, job_dir=relative, job_scr_dir=f"{relative}/scr",
                            server_job_id=number, orba_energies=result.orba_energies,
                            orba_occupations=result.orba_occupations, orbb_energies=result.orbb_energies,
                            orbb_occupations=result.orbb_occupations)
