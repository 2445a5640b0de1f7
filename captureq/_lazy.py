"""Package attributes imported from their submodule on first use, so that importing a package
(and ``captureq --help``) does not import DuckDB, pyarrow, polars or the monitoring code.

>>> import captureq
>>> "open" in captureq._LAZY and callable(captureq.open)
True
"""

from __future__ import annotations

import sys
import types
from importlib import import_module


class LazyPackage(types.ModuleType):
    """Keeps a lazily imported function whose name is also a submodule's (``captureq.scan``)
    the function: importing the submodule must not replace the package attribute with it."""

    def __setattr__(self, name, value):
        if name in vars(self).get("_LAZY", ()) and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


def lazy_package(name: str) -> None:
    """Make package ``name`` import each name of its ``_LAZY`` map (name -> submodule) on first
    use; call it at the end of the package's ``__init__``: ``lazy_package(__name__)``."""
    package = sys.modules[name]
    namespace = vars(package)
    lazy: dict[str, str] = namespace["_LAZY"]

    def __getattr__(attr: str):
        module = lazy.get(attr)
        if module is None:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        value = getattr(import_module(f".{module}", name), attr)
        namespace[attr] = value
        return value

    namespace["__getattr__"] = __getattr__
    package.__class__ = LazyPackage
