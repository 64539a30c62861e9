"""What `make venv` and `make sanity` need so that ansible-test's sanity tests run without network.

ansible-test gives each sanity test a virtual environment of its own, with the packages its ansible-core
pins (ansible_test/_data/requirements/sanity.*.txt), not those of .venv; it puts pip into each with a
get-pip.py it downloads from ci-files.testing.ansible.com. So:

  offline.py download WHEELS TEST...  downloads those pinned wheels for the tests named, and that pip, to
                                      WHEELS (`make venv`, from the package index);
  offline.py home HOME WHEELS         puts bootstrap_pip.py where ansible-test looks for its cached
                                      get-pip.py under HOME, and a pip.conf there that installs from
                                      WHEELS alone (`make sanity` runs ansible-test with that HOME, the one
                                      variable of the environment it passes on to pip).

Run it with .venv's Python, whose ansible-test (ansible-core) is the one that `make sanity` runs.
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import ansible_test
from ansible_test._internal.python_requirements import get_venv_packages

REQUIREMENTS = Path(ansible_test.__file__).parent / "_data" / "requirements"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def pip_version() -> str:
    """The pip that ansible-test bootstraps into a sanity test's virtual environment on this Python."""
    return get_venv_packages(SimpleNamespace(version=PYTHON))["pip"]


def requirement_files(tests: list[str]) -> list[Path]:
    """ansible-test's requirements of each test (`import` has a second file, sanity.import.plugin.txt)."""
    return [path for test in tests
            for path in [*REQUIREMENTS.glob(f"sanity.{test}.txt"), *sorted(REQUIREMENTS.glob(f"sanity.{test}.*.txt"))]]


def download(wheels: str, tests: list[str]) -> None:
    requirements = [arg for path in requirement_files(tests) for arg in ("-r", str(path))]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                    "--only-binary=:all:", "--dest", wheels, f"pip=={pip_version()}", *requirements], check=True)


def home(path: str, wheels: str) -> None:
    cache = Path(path) / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("bootstrap_pip.py"),
                    cache / f"get_pip_{pip_version().replace('.', '_')}.py")
    config = Path(path) / ".config" / "pip" / "pip.conf"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"[global]\nno-index = true\nfind-links = {Path(wheels).resolve()}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    download_command = commands.add_parser("download")
    download_command.add_argument("wheels")
    download_command.add_argument("tests", nargs="+")
    home_command = commands.add_parser("home")
    home_command.add_argument("path")
    home_command.add_argument("wheels")
    args = parser.parse_args()
    if args.command == "download":
        download(args.wheels, args.tests)
    else:
        home(args.path, args.wheels)


if __name__ == "__main__":
    main()
