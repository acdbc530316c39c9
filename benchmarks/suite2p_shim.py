"""Import suite2p on a CPU-only torch (run inside benchmarks/.suite2p-venv, never the project's env).

cellpose (a suite2p dependency) pulls a CUDA-only torchvision whose import registers fake kernels
for operators that do not exist on this torch ("operator torchvision::nms does not exist"). We
wrap ``torch.library.register_fake`` so registering a missing ``torchvision::`` operator is skipped.
"""

from __future__ import annotations

from typing import Any

import torch

_register_fake = torch.library.register_fake


def _operator_exists(qualified_name: str) -> bool:
    namespace, _, name = qualified_name.partition("::")
    try:
        getattr(getattr(torch.ops, namespace), name.split(".")[0])
    except (AttributeError, RuntimeError):
        return False
    return True


def _register_fake_if_present(operator: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(operator, str) and operator.startswith("torchvision::") and not _operator_exists(operator):
        if args and callable(args[0]):
            return args[0]
        return lambda function: function
    return _register_fake(operator, *args, **kwargs)


torch.library.register_fake = _register_fake_if_present

import suite2p  # noqa: E402  (must come after the patch)

__all__ = ["suite2p"]
