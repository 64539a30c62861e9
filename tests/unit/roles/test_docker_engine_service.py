"""docker_engine runs the systemd module only where the service is not as asked, counted as that module
counts it; where the state is unknown it always runs. One real ansible-playbook run evaluates every case."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEN = {"docker.service": {"active": "active", "enabled": "enabled"}}
CASES = [  # name, state asked, enabled asked, what systemctl said (None: not read), whether the module runs
    ("as-asked", "started", True, SEEN, False),
    ("enabled-runtime", "started", True, {"docker.service": {"active": "active", "enabled": "enabled-runtime"}},
     False),
    ("failed", "started", True, {"docker.service": {"active": "failed", "enabled": "enabled"}}, True),
    ("disabled", "started", True, {"docker.service": {"active": "active", "enabled": "disabled"}}, True),
    ("masked", "started", True, {"docker.service": {"active": "inactive", "enabled": "masked"}}, True),
    ("stopped-as-asked", "stopped", False, {"docker.service": {"active": "inactive", "enabled": "disabled"}}, False),
    ("stopping-loop", "stopped", False, {"docker.service": {"active": "activating", "enabled": "disabled"}}, True),
    ("not-read", "started", True, None, True),
    ("other-unit-only", "started", True, {"containerd.service": {"active": "active", "enabled": "enabled"}}, True),
]


def test_the_systemd_module_runs_only_where_the_service_differs():
    cases = [{"name": name, "state": state, "enabled": enabled, "seen": seen}
             for name, state, enabled, seen, _ in CASES]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    ansible_playbook = Path(sys.executable).parent / "ansible-playbook"
    result = subprocess.run([str(ansible_playbook), "-i", "localhost,", "-c", "local",
                             str(HERE / "service_differs.yml"), "-e", json.dumps({"cases": cases})],
                            capture_output=True, text=True, check=False, env=env, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    found = dict(re.findall(r"RESULT (\S+) (True|False)", result.stdout))
    assert found == {name: str(runs) for name, _, _, _, runs in CASES}
