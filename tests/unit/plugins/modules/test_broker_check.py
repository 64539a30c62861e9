"""broker_check's own parts: AMQP encoding and the wait; the protocol runs against the real RabbitMQ and
Redis in tests/integration/test_broker_check.py."""

import struct

import pytest

from ansible_collections.terafleet.cluster.plugins.modules.broker_check import (
    NotReady,
    Refused,
    redis_command,
    server_version,
    shortstr,
    table,
    wait_for,
)


def start_args(properties: bytes) -> bytes:
    return b"\x00\x09" + table(properties) + struct.pack(">I", 5) + b"PLAIN" + struct.pack(">I", 5) + b"en_US"


def test_server_version_is_read_past_nested_tables_and_booleans():
    properties = (shortstr("capabilities") + b"F" + table(shortstr("publisher_confirms") + b"t\x01")
                  + shortstr("product") + b"S" + struct.pack(">I", 8) + b"RabbitMQ"
                  + shortstr("version") + b"S" + struct.pack(">I", 6) + b"3.13.7")
    assert server_version(start_args(properties)) == "3.13.7"


def test_server_version_is_empty_when_not_announced():
    assert server_version(start_args(shortstr("product") + b"S" + struct.pack(">I", 1) + b"X")) == ""


def test_redis_commands_are_resp_arrays_of_bulk_strings():
    assert redis_command("AUTH", "pä") == b"*2\r\n$4\r\nAUTH\r\n$3\r\np\xc3\xa4\r\n"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_wait_retries_until_the_service_answers():
    clock, calls = Clock(), []

    def check(_timeout):
        calls.append(clock.now)
        if len(calls) < 4:
            raise NotReady("connection refused")
        return {"pong": True}

    assert wait_for(check, 30, clock=clock, sleep=clock.sleep) == {"pong": True}
    assert calls == [0.0, 1.0, 2.0, 3.0]


def test_wait_gives_up_with_the_last_reason_after_the_timeout():
    clock = Clock()

    def check(_timeout):
        raise NotReady("connection refused")

    with pytest.raises(NotReady, match=r"connection refused \(after 5 s\)"):
        wait_for(check, 5, clock=clock, sleep=clock.sleep)
    assert clock.now == 5.0


def test_a_refusal_is_not_retried():
    clock, calls = Clock(), []

    def check(_timeout):
        calls.append(1)
        raise Refused("wrong password")

    with pytest.raises(Refused):
        wait_for(check, 60, clock=clock, sleep=clock.sleep)
    assert calls == [1]
