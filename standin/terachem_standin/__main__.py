"""Entry point: `terachem-standin -s PORT`, the way `terachem -s PORT` starts TeraChem's server."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from .server import Faults, StandinServer


def main() -> None:
    parser = argparse.ArgumentParser(prog="terachem-standin", description=__doc__)
    parser.add_argument("-s", "--server", dest="port", type=int, default=int(os.environ.get("TCPB_PORT", "11111")),
                        help="port to serve TCPB on (default 11111)")
    parser.add_argument("--backend", choices=["fake", "pyscf"], default=os.environ.get("STANDIN_BACKEND", "fake"),
                        help="fake: deterministic pair potential; pyscf: real HF/DFT")
    parser.add_argument("--control-file", type=Path,
                        default=Path(os.environ.get("STANDIN_CONTROL_FILE", "standin-control.json")),
                        help="JSON fault switches read at every job (relative to the scratch directory)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    workdir = Path.cwd()
    StandinServer(args.port, workdir, args.backend, Faults.from_env(), workdir / args.control_file).serve_forever()


if __name__ == "__main__":
    main()
