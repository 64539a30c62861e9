"""input_problems: one named rule per problem, every problem of a host at once."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.terafleet.cluster.plugins.filter.input_problems import RULES, FilterModule, input_problems

CPU_WORKER = {"name": "remote-gpu2", "queues": ["remote"], "server_host": "10.1.0.21", "server_port": 11112}


@pytest.fixture()
def good(tmp_path):
    license_file = tmp_path / "license.key"
    license_file.write_text("licensed\n")
    archive = tmp_path / "worker.tar"
    archive.write_bytes(b"tar")
    return {"gpu_node": True, "head": False, "cpu_node": False, "license_file": str(license_file),
            "rabbitmq_password": "pw1", "redis_password": "pw2", "broker_url": "", "result_backend": "",
            "image_archives": {"terafleet/worker:latest": str(archive)}, "cpu_workers": [],
            "cpu_program_cores": None, "tls": True, "tls_ca_cert": "", "tls_cert": "", "tls_key": "",
            "cluster_address": "10.1.0.21", "allowed_sources": ["10.1.0.0/16"],
            "frontend_basic_auth": False, "frontend_basic_auth_password": "",
            "set_variables": ["celery_worker_image", "celery_worker_unavailable_timeout"]}


def test_good_inputs_have_no_problem(good):
    assert input_problems(good, "gpu01") == []


def test_every_rule_is_named():
    assert sorted(RULES) == ["cpu_workers", "image_archives", "license_file", "network", "passwords", "retired", "tls"]


@pytest.mark.parametrize("rule, changes, problems", [
    ("license_file", {"license_file": "/nonexistent/license.key"},
     ["TeraChem license file '/nonexistent/license.key' not found on the controller (terachem_license_file)"]),
    ("license_file", {"license_file": ""},
     ["TeraChem license file '' not found on the controller (terachem_license_file)"]),
    ("license_file", {"license_file": "", "gpu_node": False}, []),
    ("passwords", {"rabbitmq_password": ""},
     ["broker_rabbitmq_password is empty; set it (Ansible Vault) in the inventory"]),
    ("passwords", {"rabbitmq_password": None, "redis_password": None},
     ["broker_rabbitmq_password is null; set it (Ansible Vault) in the inventory",
      "broker_redis_password is null; set it (Ansible Vault) in the inventory"]),
    ("passwords", {"redis_password": 42},
     ["broker_redis_password must be a string, not int; quote it in the inventory"]),
    ("passwords", {"rabbitmq_password": "", "broker_url": "amqp://u:p@mq:5672/v"}, []),
    ("passwords", {"rabbitmq_password": "", "broker_url": "amqp://u:p@mq:5672/v", "head": True},
     ["broker_rabbitmq_password is empty; set it (Ansible Vault) in the inventory"]),
    ("passwords", {"rabbitmq_password": "it's #1", "redis_password": "it's #1 \" /%"},
     ["broker_rabbitmq_password contains #, where rabbitmq.conf ends a value (the rest would be a comment)"]),
    ("passwords", {"rabbitmq_password": "it's a/b%c\"d e", "redis_password": "it's #1 \" /%"}, []),
    ("passwords", {"rabbitmq_password": "it's #1", "broker_url": "amqp://u:p@mq:5672/v"}, []),
    ("passwords", {"rabbitmq_password": "", "gpu_node": False}, []),
    ("passwords", {"frontend_basic_auth": True},
     ["frontend_basic_auth_password is empty; set it (Ansible Vault) in the inventory"]),
    ("passwords", {"frontend_basic_auth": True, "frontend_basic_auth_password": "s3cret"}, []),
    ("passwords", {"rabbitmq_password": "", "gpu_node": False, "cpu_node": True, "cpu_workers": [CPU_WORKER],
                   "cpu_program_cores": 0},
     ["broker_rabbitmq_password is empty; set it (Ansible Vault) in the inventory"]),
    # A CPU node runs the CPU programs' worker (every core by default): it needs the passwords too.
    ("passwords", {"rabbitmq_password": "", "gpu_node": False, "cpu_node": True},
     ["broker_rabbitmq_password is empty; set it (Ansible Vault) in the inventory"]),
    ("passwords", {"rabbitmq_password": "", "gpu_node": False, "cpu_node": True, "cpu_program_cores": 0}, []),
    ("passwords", {"rabbitmq_password": "", "gpu_node": False, "cpu_node": True, "cpu_program_cores": "0"}, []),
    ("image_archives", {"image_archives": {"redis:7": "/nonexistent/redis.tar"}},
     ["archive '/nonexistent/redis.tar' for image redis:7 not found on the controller (container_images_archives)"]),
    ("image_archives", {"image_archives": ["redis.tar"]},
     ["container_images_archives must be a dict of image to archive path, got ['redis.tar']"]),
    ("cpu_workers", {"cpu_node": True, "cpu_workers": [{**CPU_WORKER, "server_port": "http"}]},
     ["CPU-only worker {'name': 'remote-gpu2', 'queues': ['remote'], 'server_host': '10.1.0.21', 'server_port': "
      "'http'} needs a name (letters, digits, _ . -), queues, server_host and a server_port in 1024-65535 "
      "(celery_worker_cpu_workers)"]),
    ("cpu_workers", {"cpu_node": True, "cpu_workers": [CPU_WORKER, CPU_WORKER]},
     ["CPU-only worker names repeat: ['remote-gpu2', 'remote-gpu2'] (celery_worker_cpu_workers)"]),
    ("cpu_workers", {"cpu_workers": [{"name": "x"}]}, []),
    ("tls", {"tls_ca_cert": __file__},
     ["broker_tls_ca_cert, broker_tls_cert and broker_tls_key go together: give all three, or none and terafleet "
      "makes a CA and the head's certificate"]),
    ("tls", {"tls_ca_cert": __file__, "tls": False}, []),
    ("tls", {"tls_ca_cert": __file__, "tls_cert": __file__, "tls_key": "/nonexistent/head.key"},
     ["broker_tls_key '/nonexistent/head.key' not found on the controller"]),
    ("tls", {"tls_ca_cert": "/nonexistent/ca.crt", "tls": False},
     ["broker_tls_ca_cert '/nonexistent/ca.crt' not found on the controller"]),
    ("tls", {"tls_ca_cert": __file__, "tls_cert": __file__, "tls_key": __file__}, []),
    ("network", {"cluster_address": "gpu01.cluster"},
     ["preflight_cluster_address must be an IP address, got 'gpu01.cluster'"]),
    ("network", {"allowed_sources": ["10.1.0.0/16", "campus", "10.2.0.7"]},
     ["preflight_allowed_sources: 'campus' is not a network (CIDR such as 10.1.0.0/16)"]),
    ("network", {"allowed_sources": []}, ["preflight_allowed_sources must be a list of networks (CIDR), got []"]),
    ("network", {"cluster_address": "10.1.0.5", "allowed_sources": [], "gpu_node": False}, []),
    # node-exporter listens on every node's cluster address, the head's too.
    ("network", {"cluster_address": "", "allowed_sources": [], "gpu_node": False},
     ["preflight_cluster_address must be an IP address, got ''"]),
    ("retired", {"set_variables": ["celery_worker_image", "celery_worker_max_retries"]},
     ["celery_worker_max_retries is no longer read: a calculation now waits for its server up to "
      "celery_worker_unavailable_timeout seconds after its first try; remove it from the inventory"]),
])
def test_each_rule(good, rule, changes, problems):
    inputs = {**good, **changes}
    assert RULES[rule](inputs) == problems
    assert input_problems(inputs, "gpu01") == [p for r in RULES.values() for p in r(inputs)]


def test_all_problems_at_once(good):
    bad = {**good, "license_file": "/nonexistent", "rabbitmq_password": None, "image_archives": {"x": "/none"}}
    assert len(input_problems(bad, "gpu01")) == 3


def test_inputs_left_out_are_named(good):
    with pytest.raises(AnsibleFilterError, match=r"gpu01: input_problems lacks the inputs \['redis_password'\]"):
        input_problems({k: v for k, v in good.items() if k != "redis_password"}, "gpu01")


def test_registered_as_a_filter():
    assert FilterModule().filters()["input_problems"] is input_problems
