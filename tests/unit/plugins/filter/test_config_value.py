"""config_value: passwords as rabbitmq.conf and redis.conf hold them, read back by each file's own rules."""

import re

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.terafleet.cluster.plugins.filter.config_value import FilterModule, config_value

HARD = ["a/b#c%d'e\"f g", "with space", "ends with space ", "#starts", "'quoted'", "back\\slash", "tab\there",
        "line\nbreak", "ünïcode✓", "plain-Token_09.~"]


def redis_words(line: str) -> list[str]:
    """A redis.conf line split into words as Redis's sdssplitargs does (double and single quotes)."""
    words, i = [], 0
    escapes = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "a": "\a"}
    while i < len(line):
        while i < len(line) and line[i] in " \t\r\n":
            i += 1
        if i == len(line):
            break
        word = []
        while i < len(line) and line[i] not in " \t\r\n":
            if line[i] == '"':
                i += 1
                while line[i] != '"':
                    if line[i] == "\\" and re.match(r"x[0-9a-fA-F]{2}", line[i + 1:i + 4]):
                        word.append(chr(int(line[i + 2:i + 4], 16)))
                        i += 4
                    elif line[i] == "\\":
                        word.append(escapes.get(line[i + 1], line[i + 1]))
                        i += 2
                    else:
                        word.append(line[i])
                        i += 1
                i += 1
                assert i == len(line) or line[i] in " \t", "Redis wants a space after a closing quote"
            elif line[i] == "'":
                i += 1
                while line[i] != "'":
                    word.append(line[i])
                    i += 1
                i += 1
            else:
                word.append(line[i])
                i += 1
        words.append("".join(word))
    return words


def rabbitmq_read(value: str) -> str:
    """A rabbitmq.conf value as RabbitMQ 3.10 reads it (checked on the broker image): up to a `#`, without
    the outer spaces; quotes and backslashes are kept."""
    return value.split("#", 1)[0].strip()


@pytest.mark.parametrize("password", HARD)
def test_redis_reads_back_every_password(password):
    line = "requirepass " + config_value(password, "redis")
    assert redis_words(line) == ["requirepass", password]


@pytest.mark.parametrize("password", ["it's a/b%c\"d\\e f", "-starts-with-a-dash", "plain-Token_09.~"])
def test_rabbitmq_reads_back_every_password_it_can_hold(password):
    assert rabbitmq_read(config_value(password, "rabbitmq")) == password


def test_plain_values_stay_bare_so_existing_files_do_not_change():
    assert config_value("plain-Token_09.~", "redis") == "plain-Token_09.~"
    assert config_value("s3cret/with+slash=", "rabbitmq") == "s3cret/with+slash="
    assert config_value("it's \"it\"", "rabbitmq") == "it's \"it\""
    assert config_value('a"b', "redis") == '"a\\"b"'


@pytest.mark.parametrize("password, message", [
    ("it's #1", "broker_rabbitmq_password contains #, where rabbitmq.conf ends a value"),
    (" padded", "broker_rabbitmq_password starts or ends with a space, which rabbitmq.conf drops"),
    ("pässwörd", "broker_rabbitmq_password contains 'ä': rabbitmq.conf holds printable ASCII only"),
    ("line\nbreak", "broker_rabbitmq_password contains '\\n': rabbitmq.conf holds printable ASCII only"),
])
def test_what_rabbitmq_conf_cannot_hold_is_refused_naming_the_variable(password, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        config_value(password, "rabbitmq", "broker_rabbitmq_password")


def test_bad_input_is_refused():
    with pytest.raises(AnsibleFilterError, match="broker_redis_password must be a string, not NoneType"):
        config_value(None, "redis", "broker_redis_password")
    with pytest.raises(AnsibleFilterError, match="syntax must be rabbitmq or redis, got 'nginx'"):
        config_value("x", "nginx")


def test_registered_as_a_filter():
    assert FilterModule().filters()["config_value"] is config_value
