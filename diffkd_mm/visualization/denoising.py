"""Pictures of what DiffKD does to a feature: student / denoised student / teacher, side by side."""
from typing import List

import numpy as np
import torch

from ..fileio import save_figure


@torch.no_grad()
def record_denoising(algorithm, data: dict, loss_name: str, level: int = 0, seed: int = 0) -> dict:
    """Run teacher, student and one DiffKD branch on a batch, in eval mode.

    Args:
        algorithm: A built mmrazor ``SingleTeacherDistill`` / ``FpnTeacherDistill`` whose
            distiller holds the :class:`~diffkd_mm.models.losses.DiffKDLoss` ``loss_name``.
        data (dict): A batch as the dataloader yields it (``inputs``, ``data_samples``).
        loss_name (str): The DiffKD entry of ``distill_losses``.
        level (int): Which feature level of that entry to show. Defaults to 0.
        seed (int): Seed of the start-point noise, for repeatable pictures. Defaults to 0.

    Returns:
        dict: ``inputs`` (B, 3, H, W) as preprocessed, with ``pixel_mean`` / ``pixel_std``
        (lists, None when the preprocessor does not normalise) to undo that, and the
        (B, L, h, w) maps ``student`` (projected student feature), ``denoised`` (after the DDIM
        loop and the output projection) and ``teacher`` (the target), plus ``gate`` (B,) and
        ``layout``: ``'logits'`` for a (B, C) entry (maps of size 1x1), else ``'maps'`` (feature
        maps, and token grids as maps).
    """
    distiller = algorithm.distiller
    loss = distiller.distill_losses[loss_name]
    mapping = distiller.loss_forward_mappings[loss_name]
    if not 0 <= level < loss.num_levels:
        raise ValueError(f'level must be in [0, {loss.num_levels}) for {loss_name!r}, got {level}')
    was_training = algorithm.training
    algorithm.eval()
    try:
        data = algorithm.data_preprocessor(data, False)
        inputs, samples = data['inputs'], data['data_samples']
        with distiller.teacher_recorders, distiller.student_recorders:
            algorithm.teacher(inputs, samples, mode='tensor')
            algorithm.student(inputs, samples, mode='tensor')
        preds = [distiller.get_record(**mapping[key]) for key in ('preds_S', 'preds_T')]
        # The loss's own path (checks, reshaping, resizing), under a fixed start-point noise;
        # the global generators (this CUDA device's too) are restored afterwards.
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out, like = list(loss.level_outputs(*preds))[level]
        pre = algorithm.data_preprocessor
        normalised = getattr(pre, '_enable_normalize', False)
        return dict(
            inputs=inputs.float(),
            student=out.student,
            denoised=out.refined,
            teacher=out.target,
            gate=out.gate,
            layout='logits' if like.dim() == 2 else 'maps',
            pixel_mean=pre.mean.flatten().tolist() if normalised else None,
            pixel_std=pre.std.flatten().tolist() if normalised else None)
    finally:
        algorithm.train(was_training)


def _pca_basis(feats: torch.Tensor, k: int = 3):
    """Top-k principal directions of (B, C, H, W) features over all positions."""
    x = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).double()
    mean = x.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(x - mean, full_matrices=False)
    return mean, v[:k].T


def _project(feats: torch.Tensor, mean, basis, lo, hi) -> np.ndarray:
    b, c, h, w = feats.shape
    x = feats.permute(0, 2, 3, 1).reshape(-1, c).double()
    y = ((x - mean) @ basis).reshape(b, h, w, -1)
    return ((y - lo) / (hi - lo)).clamp(0, 1).numpy()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> List[float]:
    return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).tolist()


def _images(record: dict) -> torch.Tensor:
    """The batch's images as (B, 3, H, W) in [0, 1], the preprocessing undone."""
    images = record['inputs'].cpu()
    if record.get('pixel_mean') is not None:
        images = images * torch.tensor(record['pixel_std'])[:, None, None] + \
            torch.tensor(record['pixel_mean'])[:, None, None]
    return (images / 255.0 if images.max() > 1.5 else images).clamp(0, 1)


def _map_cells(record: dict, cos: dict) -> List[list]:
    """Per image: (title, RGB array) of the student, denoised and teacher maps, drawn in one
    colour space (the teacher's top-3 principal components, with the teacher's range)."""
    teacher = record['teacher'].float().cpu()
    centre, basis = _pca_basis(teacher)
    proj_t = (teacher.permute(0, 2, 3, 1).reshape(-1, teacher.shape[1]).double() - centre) @ basis
    lo, hi = proj_t.quantile(0.01, dim=0), proj_t.quantile(0.99, dim=0)
    maps = {
        name: _project(record[name].float().cpu(), centre, basis, lo, hi)
        for name in ('student', 'denoised', 'teacher')
    }
    return [[(f'student (cos {cos["student"][r]:.2f})', maps['student'][r]),
             (f'denoised (cos {cos["denoised"][r]:.2f}, g={float(record["gate"][r]):.2f})',
              maps['denoised'][r]), ('teacher', maps['teacher'][r])]
            for r in range(teacher.shape[0])]


def _draw_logits(ax, record: dict, cos: dict, r: int, top_k: int = 10) -> None:
    """Bars of the student, denoised and teacher values on the teacher's ``top_k`` channels
    (classes, without an AE) of image ``r``."""
    values = {
        name: record[name][r].flatten().float().cpu()
        for name in ('student', 'denoised', 'teacher')
    }
    channels = values['teacher'].topk(min(top_k, values['teacher'].numel())).indices
    x = np.arange(len(channels))
    labels = (f'student (cos {cos["student"][r]:.2f})',
              f'denoised (cos {cos["denoised"][r]:.2f}, g={float(record["gate"][r]):.2f})',
              'teacher')
    for offset, (name, label) in zip((-0.27, 0, 0.27), zip(values, labels)):
        ax.bar(x + offset, values[name][channels].numpy(), width=0.27, label=label)
    ax.set_xticks(x, [str(int(c)) for c in channels], fontsize=7)
    ax.set_xlabel(f'the teacher target\'s top {len(channels)} channels', fontsize=8)
    ax.legend(fontsize=7)


def denoising_figure(record: dict, path: str, max_images: int = 4):
    """Save one row per image: the image, then the student, denoised student and teacher.

    Feature maps (and token grids) are drawn in one colour space: the top 3 principal
    components of the teacher's maps (as RGB), with the teacher's range, so colours compare
    across columns. Logits entries (``record['layout'] == 'logits'``) are drawn as bars of the
    three vectors on the teacher's top channels. Each title gives the cosine similarity to the
    teacher's.

    Args:
        record (dict): Output of :func:`record_denoising`.
        path (str): PNG file to write.
        max_images (int): Rows to draw. Defaults to 4.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    teacher = record['teacher'].float().cpu()
    cos = {name: _cosine(record[name].float().cpu(), teacher) for name in ('student', 'denoised')}
    images = _images(record)
    rows = min(max_images, images.shape[0])
    logits = record.get('layout') == 'logits'
    if logits:
        fig, axes = plt.subplots(
            rows, 2, figsize=(10, 2.6 * rows), squeeze=False, gridspec_kw=dict(width_ratios=[1, 3]))
        title = 'DiffKD on logits: values on the teacher target\'s top channels'
    else:
        fig, axes = plt.subplots(rows, 4, figsize=(10, 2.6 * rows), squeeze=False)
        title = 'DiffKD feature maps (top-3 PCA components of the teacher feature as RGB)'
        cells = _map_cells(record, cos)
    for r in range(rows):
        axes[r][0].imshow(images[r].permute(1, 2, 0).numpy(), interpolation='nearest')
        axes[r][0].set_title('image', fontsize=8)
        axes[r][0].axis('off')
        if logits:
            _draw_logits(axes[r][1], record, cos, r)
            continue
        for ax, (cell_title, img) in zip(axes[r][1:], cells[r]):
            ax.imshow(img, interpolation='nearest')
            ax.set_title(cell_title, fontsize=8)
            ax.axis('off')
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
