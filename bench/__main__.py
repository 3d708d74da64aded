"""Run the benchmark suites named on the command line, or all of them.

Each suite is a module `bench/<name>.py` with a `run() -> dict` function; its
result is printed as JSON so it can be pasted into docs/benchmarks.md.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import platform
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = argv or sorted(
        m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_")
    )
    if not names:
        print("no benchmark suites yet")
        return 0
    print(f"# {time.strftime('%Y-%m-%d')} on {platform.node()} ({platform.machine()})")
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        result = module.run()
        print(json.dumps({"suite": name, **result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
