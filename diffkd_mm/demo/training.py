"""One training run of the demo: mmengine's Runner, one progress line, its metric and
curves, the KD diagnostics and, for DiffKD, a picture of its features."""
import os.path as osp
from typing import Dict, Optional

import numpy as np
from mmengine.config import Config
from mmengine.runner import Runner

from ..engine.kd_diagnostics import KDDiagnosticsHook
from ..models.losses import DiffKDLoss
from ..visualization import denoising_figure, record_denoising
from .console import Console
from .settings import TASK_METRICS

#: Logged scalars that are not curves worth plotting.
NOT_CURVES = ('train/time', 'train/data_time', 'train/lr')


def metric_value(metrics: Dict[str, float], task: str) -> float:
    _, key, scale = TASK_METRICS[task]
    return float(metrics[key]) * scale


def train_run(cfg: Config,
              task: str,
              console: Console,
              title: str,
              picture: Optional[str] = None) -> dict:
    """Train, validate at the end; return the metric, seconds per iteration and the curves.

    The run's output goes to ``<work_dir>/console.log`` (besides mmengine's own log and config
    there); the terminal shows one progress line, ended with the metric. With ``picture``, the
    DiffKD feature maps of a validation batch are drawn there while the trained model is at hand.
    """
    progress = console.progress(title, cfg.train_cfg.max_iters)
    with console.quiet(osp.join(cfg.work_dir, 'console.log'), title):
        runner = Runner.from_cfg(cfg)
        runner.register_hook(progress)
        diagnostics = KDDiagnosticsHook() if cfg.model.get('distiller') else None
        if diagnostics is not None:
            runner.register_hook(diagnostics)
        runner.train()
        hub = runner.message_hub
        times = hub.get_scalar('train/time').data[0]
        skip = min(5, len(times) - 1)  # the first iterations include warm-up
        curves = {
            key[len('train/'):]: buf.data[0].tolist()
            for key, buf in hub.log_scalars.items()
            if key.startswith('train/') and key not in NOT_CURVES
        }
        name, key, _ = TASK_METRICS[task]
        logged = hub.log_scalars.get(f'val/{key}')
        value = 0.0 if logged is None else metric_value({key: logged.current()}, task)
        result = dict(value=value, s_per_iter=float(np.median(times[skip:])), curves=curves)
        if diagnostics is not None:
            result['diagnostics'] = diagnostics.records
        if picture is not None and feature_picture(runner, picture):
            result['picture'] = picture
    # CocoMetric logs nothing for a detector that detected nothing
    progress.finish(f'{name} {value:.2f}'
                    if logged is not None else f'{name} 0 (no val/{key} was logged: no detections)')
    return result


def feature_picture(runner: Runner, path: str) -> bool:
    algorithm = runner.model
    losses = getattr(getattr(algorithm, 'distiller', None), 'distill_losses', {})
    name = next((n for n, m in losses.items() if isinstance(m, DiffKDLoss)), None)
    if name is None:
        return False
    batch = next(iter(runner.val_dataloader))
    denoising_figure(record_denoising(algorithm, batch, name), path)
    return True


def device_name() -> str:
    """What trained a run, for its record: the GPU's name, else ``'cpu'`` (mmengine's Runner
    takes the GPU when there is one)."""
    import torch
    return torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'
