"""A value as RabbitMQ's or Redis's configuration file must hold it, so that it reads back unchanged."""

from __future__ import annotations

DOCUMENTATION = r"""
name: config_value
short_description: Quote a value for rabbitmq.conf or redis.conf
version_added: 0.1.0
author: terafleet developers
description:
  - Returns O(_input) as a value of a C(rabbitmq.conf) setting (O(syntax=rabbitmq)) or as one word of a
    C(redis.conf) line (O(syntax=redis)), such that the service reads back exactly O(_input).
  - A value Redis reads back unchanged as it is stays bare, so existing files do not change; anything else
    is double-quoted with backslash escapes.
  - C(rabbitmq.conf) has no quoting. Quotes, backslashes, C(/), C(%) and inner spaces are kept as they
    are, while a value with C(#) (the rest is a comment), outer spaces (dropped) or a character outside
    printable ASCII (RabbitMQ does not start) has no form in it and is refused, naming O(variable);
    preflight refuses such a password first, see P(terafleet.cluster.input_problems#filter).
positional: syntax, variable
options:
  _input:
    description: The value, such as a password.
    type: str
    required: true
  syntax:
    description: The file the value goes into.
    type: str
    choices: [rabbitmq, redis]
    required: true
  variable:
    description: The variable the value came from, named in the error.
    type: str
    default: value
"""

EXAMPLES = r"""
- name: A password in redis.conf
  ansible.builtin.debug:
    msg: "requirepass {{ broker_redis_password | terafleet.cluster.config_value('redis', 'broker_redis_password') }}"
"""

RETURN = r"""
_value:
  description: The value as the file holds it.
  type: str
  sample: '"s3cret # with spaces"'
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.terafleet.cluster.plugins.plugin_utils.config_syntax import rabbitmq_value, redis_value


def config_value(value: object, syntax: str, variable: str = "value") -> str:
    """Return `value` quoted for `syntax`; see DOCUMENTATION."""
    if not isinstance(value, str):
        raise AnsibleFilterError(f"{variable} must be a string, not {type(value).__name__}")
    if syntax == "redis":
        return redis_value(value)
    if syntax == "rabbitmq":
        try:
            return rabbitmq_value(value)
        except ValueError as error:
            raise AnsibleFilterError(f"{variable} {error}") from None
    raise AnsibleFilterError(f"config_value: syntax must be rabbitmq or redis, got {syntax!r}")


class FilterModule:
    """terafleet's configuration-file quoting."""

    def filters(self) -> dict:
        return {"config_value": config_value}
