"""Import MONAI Label's infer modules without torchvision.

``monailabel/transform/post.py`` (imported by MONAI Label's ``BundleInferTask``) imports
``make_grid`` and ``save_image`` from ``torchvision.utils`` at module level, for a
post-transform this app never uses. The torchvision wheels on PyPI are CUDA builds: against the
CPU torch of ``.venv-monailabel`` their operators fail to load (``operator torchvision::nms does
not exist``), and the CPU builds live on an index this project does not reach. So torchvision is
not installed, and :func:`import_without_torchvision` imports such a module with a stand-in
``torchvision.utils`` whose two functions raise, then removes the stand-in from
``sys.modules`` again, so that no other import (MONAI's ``optional_import("torchvision")``)
ever sees it.

Example:
    >>> module = import_without_torchvision("json")
    >>> module.__name__, "torchvision" in sys.modules
    ('json', False)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

__all__ = ["import_without_torchvision"]


def _unavailable(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError(
        "torchvision is not installed in the MONAI Label environment (see lib/torchvision_free.py)"
    )


def import_without_torchvision(module: str) -> types.ModuleType:
    """Import ``module``, lending it a stand-in ``torchvision.utils`` when torchvision is absent.

    Args:
        module: the dotted module name.

    Returns:
        The imported module.
    """
    if importlib.util.find_spec("torchvision") is not None or module in sys.modules:
        return importlib.import_module(module)
    package = types.ModuleType("torchvision")
    utils = types.ModuleType("torchvision.utils")
    utils.make_grid = _unavailable  # type: ignore[attr-defined]
    utils.save_image = _unavailable  # type: ignore[attr-defined]
    package.utils = utils  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.utils"] = package, utils
    try:
        return importlib.import_module(module)
    finally:
        del sys.modules["torchvision"], sys.modules["torchvision.utils"]
