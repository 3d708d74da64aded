"""The few parts of kubernetes-asyncio kuik uses, imported without its ~1,500 generated modules.

`kubernetes_asyncio` and its `client` package import every generated API and model class at
once (~37 MiB of a ~100 MiB service process), yet kuik only uses `ApiClient`, `Configuration`,
three API classes (always with `_preload_content=False`, so no response is turned into a model)
and the kubeconfig loaders. `slim_import()` registers those packages without running their
`__init__`, imports just those parts, and leaves a fallback: the first access to any other name
of `kubernetes_asyncio`, `.client`, `.client.api` or `.client.models` runs the real `__init__`,
so code (a test, the library's own deserializer) that reaches for a model still gets it.
When the library is already imported (by someone else, in full) nothing is changed.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

__all__ = ["k8s", "k8s_config", "slim_import"]

_PACKAGE = "kubernetes_asyncio"
_LAZY = ("", ".client", ".client.api", ".client.models")
_NEEDED = {
    ".client": {
        "Configuration": "kubernetes_asyncio.client.configuration",
        "ApiClient": "kubernetes_asyncio.client.api_client",
        "CoreV1Api": "kubernetes_asyncio.client.api.core_v1_api",
        "CustomObjectsApi": "kubernetes_asyncio.client.api.custom_objects_api",
        "EventsV1Api": "kubernetes_asyncio.client.api.events_v1_api",
    },
}


def _lazy_package(name: str, directory: Path) -> types.ModuleType:
    """A package module for `name` whose `__init__` runs only when a name it defines is used."""
    spec = importlib.util.spec_from_file_location(
        name, directory / "__init__.py", submodule_search_locations=[str(directory)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {name} from {directory}")
    loader = spec.loader
    module = importlib.util.module_from_spec(spec)

    def __getattr__(attribute: str) -> Any:
        if (directory / f"{attribute}.py").is_file() or (directory / attribute).is_dir():
            return importlib.import_module(f"{name}.{attribute}")  # a submodule: import only it
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        del module.__dict__["__getattr__"]
        loader.exec_module(module)  # everything else: the real package, in full
        return getattr(module, attribute)

    module.__dict__["__getattr__"] = __getattr__
    return module


def slim_import() -> None:
    """Make `import kubernetes_asyncio...` cheap for kuik's uses (see the module docstring)."""
    if _PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(_PACKAGE)  # a top-level find_spec runs no package code
    if spec is None or not spec.submodule_search_locations:
        return  # not installed: the normal import will say so
    root = Path(next(iter(spec.submodule_search_locations)))
    modules: dict[str, types.ModuleType] = {}
    for suffix in _LAZY:
        name = _PACKAGE + suffix
        modules[suffix] = _lazy_package(name, root.joinpath(*suffix.split(".")[1:]))
        sys.modules[name] = modules[suffix]
        if suffix:
            parent, _, child = suffix.rpartition(".")
            modules[parent].__dict__[child] = modules[suffix]
    try:
        for suffix, names in _NEEDED.items():
            for attribute, source in names.items():
                modules[suffix].__dict__[attribute] = getattr(
                    importlib.import_module(source), attribute
                )
        modules[""].__dict__["config"] = importlib.import_module(f"{_PACKAGE}.config")
    except (ImportError, AttributeError):
        # a library layout this does not know: undo, so the normal (full) import runs instead
        for name in [n for n in sys.modules if n == _PACKAGE or n.startswith(_PACKAGE + ".")]:
            del sys.modules[name]


slim_import()

from kubernetes_asyncio import client as k8s  # noqa: E402
from kubernetes_asyncio import config as k8s_config  # noqa: E402
