"""docker_containers_info: what it returns of the engine's containers, volumes and networks."""

from ansible_collections.terafleet.cluster.plugins.modules.docker_containers_info import gather


class Engine:
    def __init__(self):
        self.held = {
            "worker-gpu0": {"Name": "/worker-gpu0", "Config": {"Env": ["TERAFLEET_BROKER_URL=amqp://u:pw@h/v"],
                                                              "Labels": {"org.terafleet.role": "worker"}}},
            "terachem-gpu0": {"Name": "/terachem-gpu0", "Config": {"Labels": {"org.terafleet.role": "terachem"}},
                              "RestartCount": 2},
        }
        self.asked = []

    def containers(self, labels):
        self.asked.append(labels)
        # The listing names one container removed before it is inspected.
        return [{"Names": [f"/{name}"]} for name in (*self.held, "gone")]

    def container(self, name):
        return self.held.get(name)

    def volumes(self, labels):
        return [{"Name": "terafleet-scratch-gpu1"}, {"Name": "terafleet-rabbitmq-data"}]

    def networks(self, labels):
        return [{"Name": "terafleet"}]


def test_containers_are_inspected_by_name_without_their_environment():
    engine = Engine()
    containers, volumes, networks = gather(engine, {"org.terafleet.role": None}, {"org.terafleet.role": None})
    assert [c["Name"] for c in containers] == ["/terachem-gpu0", "/worker-gpu0"]
    assert "Env" not in containers[1]["Config"] and containers[1]["Config"]["Labels"] == {
        "org.terafleet.role": "worker"}
    assert containers[0]["RestartCount"] == 2
    assert [v["Name"] for v in volumes] == ["terafleet-rabbitmq-data", "terafleet-scratch-gpu1"]
    assert networks == [{"Name": "terafleet"}] and engine.asked == [{"org.terafleet.role": None}]
