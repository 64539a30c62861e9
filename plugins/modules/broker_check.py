#!/usr/bin/python
"""Ansible module: wait until RabbitMQ and Redis answer with the configured credentials."""

from __future__ import annotations

DOCUMENTATION = r"""
module: broker_check
short_description: Wait until RabbitMQ and Redis answer, and check they take the configured credentials
version_added: 0.1.0
author: terafleet developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
description:
  - Opens an AMQP 0-9-1 connection to RabbitMQ the way a Celery worker does (PLAIN login, then the
    virtual host), and a Redis connection that sends C(AUTH) (as O(redis.user)) and C(PING). Retries both
    until they answer or O(timeout) runs out.
  - A RabbitMQ that answers but refuses the password is reported (RV(rabbitmq.authenticated) false), not
    failed, so the task after it can set the password of a database that predates it. A Redis that refuses
    the password, or a user that cannot open the virtual host, fails the task.
  - Speaks the protocols itself (standard library), in one short run on the node, instead of starting an
    Erlang VM for C(rabbitmq-diagnostics) and C(rabbitmqctl) inside the broker's container.
options:
  rabbitmq:
    description: RabbitMQ to check.
    type: dict
    required: true
    suboptions:
      host: {description: Address RabbitMQ's AMQP port is published on., type: str, required: true}
      port: {description: AMQP port., type: int, default: 5672}
      user: {description: User name., type: str, required: true}
      password: {description: Password., type: str, required: true}
      vhost: {description: Virtual host the user must be able to open., type: str, default: /}
  redis:
    description: Redis to check.
    type: dict
    required: true
    suboptions:
      host: {description: Address Redis's port is published on., type: str, required: true}
      port: {description: Redis port., type: int, default: 6379}
      user: {description: ACL user name; C(default) is the user C(requirepass) sets., type: str, default: default}
      password: {description: The user's password., type: str, required: true}
  tls_ca_file:
    description:
      - CA certificate (a file on the node) to verify both services' certificates with; given, both are
        reached over TLS (AMQPS, Redis TLS) and each certificate must name O(rabbitmq.host) and
        O(redis.host). A certificate the CA did not sign fails the task at once.
    type: path
  timeout:
    description: Seconds to wait for both to answer.
    type: int
    default: 120
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Only reads; it changes nothing.
"""

EXAMPLES = r"""
- name: Wait until both answer with their passwords
  terafleet.cluster.broker_check:
    rabbitmq: {host: 10.0.0.1, user: terafleet, password: "{{ vault_rabbitmq }}", vhost: terafleet}
    redis: {host: 10.0.0.1, user: terafleet, password: "{{ vault_redis }}"}
  register: __broker
"""

RETURN = r"""
rabbitmq:
  description: What RabbitMQ answered.
  returned: success
  type: dict
  contains:
    authenticated: {description: Whether RabbitMQ accepted the user and password., type: bool}
    server_version: {description: The version RabbitMQ announces., type: str}
    message: {description: RabbitMQ's reason when it refused the login., type: str}
redis:
  description: What Redis answered.
  returned: success
  type: dict
  contains:
    pong: {description: Redis answered PING after AUTH., type: bool}
waited:
  description: Seconds spent until both answered.
  returned: success
  type: float
"""

import contextlib
import socket
import ssl
import struct
import time

from ansible.module_utils.basic import AnsibleModule

# One name per assignment: ansible-doc reads this file's top-level assignments and warns on tuples.
FRAME_METHOD = 1
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
# AMQP connection methods, (class id, method id).
START = (10, 10)
START_OK = (10, 11)
TUNE = (10, 30)
TUNE_OK = (10, 31)
OPEN = (10, 40)
OPEN_OK = (10, 41)
CLOSE = (10, 50)
CLOSE_OK = (10, 51)


class NotReady(Exception):
    """The service does not answer yet (refused, reset, still starting); worth another try."""


class Refused(Exception):
    """The service answers and says no; another try would get the same answer."""


def shortstr(text: str) -> bytes:
    data = text.encode()
    return bytes([len(data)]) + data


def longstr(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def table(fields: bytes) -> bytes:
    return struct.pack(">I", len(fields)) + fields


def method_frame(method: tuple[int, int], args: bytes) -> bytes:
    payload = struct.pack(">HH", *method) + args
    return struct.pack(">BHI", FRAME_METHOD, 0, len(payload)) + payload + bytes([FRAME_END])


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


def read_method(sock: socket.socket) -> tuple[tuple[int, int], bytes]:
    """The next method frame's (class, method) and arguments; heartbeats are skipped."""
    while True:
        kind, _channel, size = struct.unpack(">BHI", read_exactly(sock, 7))
        payload = read_exactly(sock, size)
        if read_exactly(sock, 1)[0] != FRAME_END:
            raise NotReady("AMQP frame without its end marker")
        if kind == FRAME_HEARTBEAT:
            continue
        if kind != FRAME_METHOD:
            raise NotReady(f"unexpected AMQP frame type {kind}")
        return struct.unpack(">HH", payload[:4]), payload[4:]


def close_reason(args: bytes) -> str:
    code = struct.unpack(">H", args[:2])[0]
    text = args[3:3 + args[2]].decode(errors="replace")
    return f"{code} {text}"


def server_version(start_args: bytes) -> str:
    """The `version` entry of Connection.Start's server properties, or ''."""
    size = struct.unpack(">I", start_args[2:6])[0]
    fields, offset = start_args[6:6 + size], 0
    while offset < len(fields):
        name_len = fields[offset]
        name = fields[offset + 1:offset + 1 + name_len].decode(errors="replace")
        offset += 1 + name_len
        kind = chr(fields[offset])
        offset += 1
        if kind == "S":
            value_len = struct.unpack(">I", fields[offset:offset + 4])[0]
            value = fields[offset + 4:offset + 4 + value_len].decode(errors="replace")
            offset += 4 + value_len
            if name == "version":
                return value
        elif kind == "F":
            offset += 4 + struct.unpack(">I", fields[offset:offset + 4])[0]
        elif kind == "t":
            offset += 1
        else:  # a type RabbitMQ does not put in its server properties; stop reading, keep the answer
            break
    return ""


def connect(service: str, host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None) -> socket.socket:
    """A connection to `service`, over TLS with `tls`; one it refuses, or not yet, is worth another try, one
    whose certificate is not trusted is not."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as error:
        raise NotReady(f"{service} at {host}:{port}: {error}") from None
    if tls is None:
        return sock
    try:
        return tls.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as error:
        sock.close()
        raise Refused(f"{service} at {host}:{port}: its certificate is not trusted: {error.verify_message}") from None
    except OSError as error:
        sock.close()
        raise NotReady(f"{service} at {host}:{port}: the TLS handshake failed: {error}") from None


def check_rabbitmq(host: str, port: int, user: str, password: str, vhost: str, timeout: float,
                   tls: ssl.SSLContext | None = None) -> dict:
    """Log in over AMQP 0-9-1 and open `vhost`, then close cleanly."""
    with connect("RabbitMQ", host, port, timeout, tls) as sock:
        try:
            return _amqp_login(sock, user, password, vhost)
        except (OSError, EOFError, struct.error, IndexError) as error:
            # Reset, closed or cut short mid-handshake (a broker still starting, or too busy to answer).
            reason = str(error) or type(error).__name__
            raise NotReady(f"RabbitMQ at {host}:{port} broke off the AMQP handshake: {reason}") from None


def _amqp_login(sock: socket.socket, user: str, password: str, vhost: str) -> dict:
    sock.sendall(b"AMQP\x00\x00\x09\x01")
    method, args = read_method(sock)
    if method != START:
        raise NotReady(f"RabbitMQ answered {method} instead of Connection.Start")
    version = server_version(args)
    # Asking for authentication_failure_close makes RabbitMQ say why it refuses a login, and lets a
    # refusal (Connection.Close) be told from a connection that merely broke.
    properties = table(shortstr("product") + b"S" + longstr(b"terafleet broker_check")
                       + shortstr("capabilities") + b"F"
                       + table(shortstr("authentication_failure_close") + b"t\x01"))
    sock.sendall(method_frame(START_OK, properties + shortstr("PLAIN")
                              + longstr(b"\0" + user.encode() + b"\0" + password.encode()) + shortstr("en_US")))
    method, args = read_method(sock)
    if method == CLOSE:
        return {"authenticated": False, "server_version": version, "message": close_reason(args)}
    if method != TUNE:
        raise NotReady(f"RabbitMQ answered {method} to the login instead of Connection.Tune")
    channel_max, frame_max, _heartbeat = struct.unpack(">HIH", args[:8])
    sock.sendall(method_frame(TUNE_OK, struct.pack(">HIH", channel_max, frame_max, 0)))
    sock.sendall(method_frame(OPEN, shortstr(vhost) + shortstr("") + b"\x00"))
    method, args = read_method(sock)
    if method == CLOSE:
        raise Refused(f"RabbitMQ: user {user} cannot open virtual host {vhost!r}: {close_reason(args)}")
    if method != OPEN_OK:
        raise NotReady(f"RabbitMQ answered {method} to Connection.Open")
    sock.sendall(method_frame(CLOSE, struct.pack(">H", 200) + shortstr("terafleet check done")
                              + struct.pack(">HH", 0, 0)))
    with contextlib.suppress(OSError, EOFError, struct.error):
        read_method(sock)  # Connection.Close-Ok; the check is already done either way
    return {"authenticated": True, "server_version": version, "message": ""}


def redis_command(*words: str) -> bytes:
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$" + str(len(data)).encode() + b"\r\n" + data + b"\r\n")
    return b"".join(parts)


def read_line(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data[:-2].decode(errors="replace")


def check_redis(host: str, port: int, user: str, password: str, timeout: float,
                tls: ssl.SSLContext | None = None) -> dict:
    """AUTH, then PING; a refused password fails, a Redis still loading its data is not ready yet."""
    with connect("Redis", host, port, timeout, tls) as sock:
        try:
            sock.sendall(redis_command("AUTH", user, password) + redis_command("PING") + redis_command("QUIT"))
            auth, ping = read_line(sock), read_line(sock)
        except (OSError, EOFError) as error:
            raise NotReady(f"Redis at {host}:{port} did not answer: {error}") from None
    if (auth.startswith("-WRONGPASS") or auth.startswith("-ERR invalid password") or "no password is set" in auth
            or "without any password configured" in auth):
        raise Refused(f"Redis at {host}:{port} refused the configured user {user!r} and password: {auth[1:]}")
    if auth != "+OK" or ping != "+PONG":
        raise NotReady(f"Redis at {host}:{port} answered {auth!r} to AUTH and {ping!r} to PING")
    return {"pong": True}


def wait_for(check, timeout: float, clock=time.monotonic, sleep=time.sleep) -> dict:
    """Run `check` until it answers, it is refused, or `timeout` seconds pass (then NotReady's last word)."""
    deadline = clock() + timeout
    while True:
        try:
            return check(max(1.0, min(10.0, deadline - clock())))
        except NotReady as error:
            if clock() >= deadline:
                raise NotReady(f"{error} (after {timeout} s)") from None
        sleep(1)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "rabbitmq": {"type": "dict", "required": True,
                         "options": {"host": {"type": "str", "required": True},
                                     "port": {"type": "int", "default": 5672},
                                     "user": {"type": "str", "required": True},
                                     "password": {"type": "str", "required": True, "no_log": True},
                                     "vhost": {"type": "str", "default": "/"}}},
            "redis": {"type": "dict", "required": True,
                      "options": {"host": {"type": "str", "required": True},
                                  "port": {"type": "int", "default": 6379},
                                  "user": {"type": "str", "default": "default"},
                                  "password": {"type": "str", "required": True, "no_log": True}}},
            "tls_ca_file": {"type": "path"},
            "timeout": {"type": "int", "default": 120},
        },
        supports_check_mode=True,
    )
    rabbit, redis = module.params["rabbitmq"], module.params["redis"]
    tls = None
    if module.params["tls_ca_file"]:
        try:
            tls = ssl.create_default_context(cafile=module.params["tls_ca_file"])
        except (OSError, ssl.SSLError) as error:
            module.fail_json(msg=f"cannot read the CA certificate {module.params['tls_ca_file']}: {error}")
    started = time.monotonic()
    try:
        rabbit_answer = wait_for(lambda t: check_rabbitmq(rabbit["host"], rabbit["port"], rabbit["user"],
                                                          rabbit["password"], rabbit["vhost"], t, tls),
                                 module.params["timeout"])
        redis_answer = wait_for(lambda t: check_redis(redis["host"], redis["port"], redis["user"],
                                                      redis["password"], t, tls),
                                max(1, module.params["timeout"] - (time.monotonic() - started)))
    except (NotReady, Refused) as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, rabbitmq=rabbit_answer, redis=redis_answer,
                     waited=round(time.monotonic() - started, 1))


if __name__ == "__main__":
    main()
