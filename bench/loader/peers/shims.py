"""Import shims the peers need beside the CPU torch, and nothing more.

mosaicml-streaming imports torchvision when it is imported (``streaming.vision`` subclasses
``torchvision.datasets.VisionDataset`` and imports ``to_tensor``), and both it and litdata
declare torchvision as a dependency; PyPI's torchvision for torch 2.13 is a CUDA build that
cannot load beside the CPU torch this project holds. The bench reads bytes, never images, so
where no working torchvision imports, :func:`stand_in_torchvision` puts a stub in
``sys.modules`` with just the names those imports ask for (using any of them raises).
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from typing import Any

__all__ = ["STUB_VERSION", "stand_in_torchvision"]

STUB_VERSION = "0+tierstore.bench.stub"


def _unavailable(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("torchvision is a stub here (tierstore.cli.bench.loader.peers.shims): "
                       "no working torchvision is installed beside the CPU torch")


def stand_in_torchvision() -> str | None:
    """Make ``import torchvision`` succeed; why a stub was needed (None: a real one works)."""
    module = sys.modules.get("torchvision")
    if module is not None:
        return getattr(module, "__stub_reason__", None)
    try:
        import torchvision  # noqa: F401  (a working build: the peers get the real one)

        return None
    except Exception as exc:  # not installed, or a CUDA build that fails against the CPU torch
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    import torch.utils.data

    class VisionDataset(torch.utils.data.Dataset[Any]):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            _unavailable()

    names: dict[str, dict[str, Any]] = {
        "torchvision": {"__version__": STUB_VERSION, "__stub_reason__": f"stub ({why})"},
        "torchvision.datasets": {"VisionDataset": VisionDataset, "CIFAR10": _unavailable},
        "torchvision.transforms": {},
        "torchvision.transforms.functional": {"to_tensor": _unavailable},
        "torchvision.io": {},
    }
    for name, attributes in names.items():
        stub = types.ModuleType(name, "a stub for tierstore.cli.bench's peers (see its shims)")
        stub.__spec__ = importlib.machinery.ModuleSpec(name, None)
        stub.__dict__.update(attributes)
        sys.modules[name] = stub
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, stub)
    return f"stub ({why})"
