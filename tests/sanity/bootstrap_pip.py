"""Stands in for the get-pip.py that ansible-test downloads from ci-files.testing.ansible.com to put pip into
each of its empty sanity-test virtual environments. `make sanity` copies it where ansible-test caches that
script (~/.ansible/test/cache/get_pip_<version>.py, under a HOME of its own; see offline.py).

ansible-test runs it with the environment's Python as `get-pip.py [pip options] pip==VERSION --no-setuptools
--no-wheel`. Here pip comes from the Python's own ensurepip and then installs pip==VERSION where pip's
configuration says (`make sanity`: the wheels `make venv` downloaded, no index); setuptools, which ensurepip
adds, is removed again where --no-setuptools asks.
"""

import subprocess
import sys

FLAGS = {"--no-setuptools", "--no-wheel"}


def main(argv: list[str]) -> int:
    subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *[a for a in argv if a not in FLAGS]],
                   check=True)
    if "--no-setuptools" in argv:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes", "setuptools"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
