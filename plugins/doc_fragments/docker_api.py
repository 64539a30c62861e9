"""Documentation the modules that talk to the Docker API through its socket share."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  docker_socket:
    description: The engine's unix socket.
    type: path
    default: /var/run/docker.sock
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
requirements:
  - A Docker engine with API 1.41 (Docker 20.10) or newer.
"""
