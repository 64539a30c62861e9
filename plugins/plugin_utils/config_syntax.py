"""Values written into the configuration files of RabbitMQ (rabbitmq.conf) and Redis (redis.conf)."""

from __future__ import annotations

# Redis splits a line into words as sdssplitargs does: a word ends at whitespace, and a quote anywhere in
# it opens a quoted part. Inside double quotes a backslash escapes, with \n, \r, \t, \a, \b and \xHH.
_REDIS_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\a": "\\a", "\b": "\\b"}


def redis_value(text: str) -> str:
    """`text` as one word of a redis.conf line: bare where Redis reads it back unchanged, else quoted."""
    if text and all("!" <= char <= "~" and char not in "\"'" for char in text):
        return text
    quoted = []
    for char in text:
        if char in _REDIS_ESCAPES:
            quoted.append(_REDIS_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            quoted.append(f"\\x{ord(char):02x}")
        else:
            quoted.append(char)
    return '"' + "".join(quoted) + '"'


def rabbitmq_problem(text: str) -> str:
    """Why `text` cannot be a value in rabbitmq.conf, or ''. The file has no quoting: a value ends at `#`
    and loses its outer spaces, and RabbitMQ does not start on a file with a character outside printable
    ASCII (RabbitMQ 3.10, checked)."""
    for char in text:
        if not " " <= char <= "~":
            return (f"contains {char!r}: rabbitmq.conf holds printable ASCII only, and RabbitMQ does not "
                    "start with anything else in it")
    if "#" in text:
        return "contains #, where rabbitmq.conf ends a value (the rest would be a comment)"
    if text != text.strip():
        return "starts or ends with a space, which rabbitmq.conf drops"
    return ""


def rabbitmq_value(text: str) -> str:
    """`text` as a rabbitmq.conf value (the file has no quoting: quotes and backslashes are kept as they
    are); ValueError where the file cannot hold it."""
    problem = rabbitmq_problem(text)
    if problem:
        raise ValueError(problem)
    return text
