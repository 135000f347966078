"""DDP on machines without GPUs (gloo), without touching mmengine's GPU path.

mmengine 0.10.7 assumes an accelerator in two places: its pytorch launcher calls
``torch.cuda.set_device(local_rank)`` before ``init_process_group``, and ``Runner.wrap_model``
passes ``device_ids=[LOCAL_RANK]`` to DDP, which torch rejects for a CPU module. Both are only
reached through ``Runner``; ``setup_cpu_distributed`` handles them from the config, and only when
no CUDA device exists, so GPU runs go through mmengine unchanged.
"""
import datetime
import gc
import os

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that drops ``device_ids`` for a module on the CPU."""

    def __init__(self, module, device_ids=None, **kwargs):
        on_cpu = all(not p.is_cuda for p in module.parameters())
        super().__init__(module=module, device_ids=None if on_cpu else device_ids, **kwargs)


def setup_cpu_distributed(cfg) -> bool:
    """Prepare a torchrun launch on a machine without CUDA; a no-op anywhere else.

    Initialises the gloo process group from torchrun's environment (mmengine then skips its own,
    CUDA-only, initialisation), with ``env_cfg.dist_cfg.timeout`` (seconds) as the longest wait
    of a collective when it is set, and selects :class:`CPUDistributedDataParallel` as the model
    wrapper, keeping ``find_unused_parameters`` from the config.

    Args:
        cfg (Config): The training config (``launcher`` already set).

    Returns:
        bool: True when the CPU path was set up.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return False
    if not dist.is_initialized():
        kwargs = {}
        timeout = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('timeout')
        if timeout is not None:  # as mmengine's init_dist takes it: seconds
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
                raise ValueError('env_cfg.dist_cfg.timeout must be a number of seconds > 0, got '
                                 f'{timeout!r}')
            kwargs['timeout'] = datetime.timedelta(seconds=timeout)
        dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            **kwargs)
    wrapper = cfg.get('model_wrapper_cfg') or {}
    if wrapper.get('type', 'MMDistributedDataParallel') == 'MMDistributedDataParallel':
        cfg.model_wrapper_cfg = dict(
            wrapper,
            type='CPUDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    return True


def close_distributed() -> None:
    """End a completed distributed run: wait for every process, destroy the process group, and
    join the backend's threads while the interpreter is still whole; a no-op without one.

    ``destroy_process_group`` alone does not end gloo's threads (``gloo_tcp_loop``,
    ``pt_gloo_runloop``): the DDP wrapper's reducer still holds the group, and the runner that
    holds the wrapper sits in reference cycles that only the garbage collector frees. Left to
    interpreter shutdown, the group is torn down at an arbitrary point of finalisation, and the
    process may abort ("terminate called without an active exception", SIGABRT), so that
    torchrun reports a finished run as failed. The caller drops its runner first; the barrier
    keeps a process from closing its connections while a peer still finishes its last
    collective. Called only after success: after a failure the other processes may be gone, and
    torchrun stops them anyway.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()
    gc.collect()  # frees the runner's cycles, hence the group and its threads
