"""Test helpers that every kuik suite reuses: real servers on free loopback ports.

The pytest plugin (`kuikcore.testing.plugin`) exposes them as fixtures; the
classes here can also be used directly by benchmarks and the demo.
"""

from kuikcore.testing.ports import free_port, wait_for_port
from kuikcore.testing.redis import RedisServer

__all__ = ["RedisServer", "free_port", "wait_for_port"]
