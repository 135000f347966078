"""Mixed precision on the CPU: bf16 autocast through an mmengine optimizer wrapper."""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward runs under ``torch.autocast('cpu', dtype)``.

    mmengine's ``AmpOptimWrapper`` refuses to run without an accelerator. bf16 keeps fp32's
    exponent range, so no loss scaling is needed; BN layers and DiffKD's scheduler constants stay
    in fp32 (autocast leaves batch norm in fp32, and the constants are fp32 buffers).

    Args:
        dtype (str | torch.dtype): Autocast dtype. Defaults to ``torch.bfloat16``.
        **kwargs: :class:`OptimWrapper` arguments.
    """

    def __init__(self, dtype='bfloat16', **kwargs) -> None:
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield
