"""Test helpers that every kuik suite reuses: real servers on free loopback ports.

The pytest plugin (`kuik_testing.plugin`) exposes them as fixtures; the
classes here can also be used directly by benchmarks and the demo.
"""

from kuik_testing.images import (
    Layer,
    PushError,
    SyntheticImage,
    get_manifest,
    make_layer,
    push_image,
    synthetic_image,
    synthetic_index,
)
from kuik_testing.ports import free_port, wait_for_port
from kuik_testing.redis import RedisServer
from kuik_testing.registry import RegistryHTTP, RegistryRequest, RegistryServer

__all__ = [
    "Layer",
    "PushError",
    "RedisServer",
    "RegistryHTTP",
    "RegistryRequest",
    "RegistryServer",
    "SyntheticImage",
    "free_port",
    "get_manifest",
    "make_layer",
    "push_image",
    "synthetic_image",
    "synthetic_index",
    "wait_for_port",
]
