"""A stand-in for TeraChem's protocol-buffer server (TCPB), for tests and demos on machines without GPUs.

It is not TeraChem and is never deployed by default. It speaks the same protocol, lays out its scratch
the same way, and fails the same ways where operations care (scratch collisions, crashes, hangs).
"""

__version__ = "0.1.0"
