"""Realistic status list entries, for the tests and benchmarks that size statuses.

Shaped like what the services write, so a size measured with them is the size a cluster sees:
a copied image's (C)ISM `matchingImages` entry is ~290 bytes of JSON, a checked image's CISA
`images` entry ~130.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["availability_entry", "mirrored_entry"]


def _image(i: int) -> str:
    return f"registry.example.com/team-{i % 50:02d}/app-{i:05d}:1.{i % 7}"


def mirrored_entry(i: int) -> dict[str, Any]:
    """The `i`th image, copied to one mirror (digest and platform recorded)."""
    image = _image(i)
    return {
        "image": image,
        "mirrors": [
            {
                "image": f"mirror.example:5000/m/{image}",
                "mirroredAt": "2026-12-04T10:00:00Z",
                "digest": "sha256:" + hashlib.sha256(str(i).encode()).hexdigest(),
                "platforms": ["linux/amd64"],
            }
        ],
    }


def availability_entry(i: int) -> dict[str, Any]:
    """The `i`th image, checked and available."""
    return {
        "image": _image(i),
        "status": "Available",
        "lastMonitor": "2026-12-04T10:00:00Z",
        "original": False,
    }
