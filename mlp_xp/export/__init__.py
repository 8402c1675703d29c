"""Models out to other runtimes and back: PyTorch (``torch_io``) and ONNX (``onnx_io``).

Each module imports its foreign library only when one of its functions runs, so importing
mlp_xp needs neither torch nor onnx; nothing on the training path imports this package.
"""

from .onnx_io import export_onnx
from .torch_io import from_torch, save_torch_state, to_torch, torch_source, torch_state_dict

__all__ = ["export_onnx", "from_torch", "save_torch_state", "to_torch", "torch_source", "torch_state_dict"]
