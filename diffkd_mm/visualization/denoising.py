"""Pictures of what DiffKD does to a feature: student / denoised student / teacher, side by side."""
from typing import List

import numpy as np
import torch


@torch.no_grad()
def record_denoising(algorithm, data: dict, loss_name: str, level: int = 0,
                     seed: int = 0) -> dict:
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
        loop and the output projection) and ``teacher`` (the target), plus ``gate`` (B,).
    """
    distiller = algorithm.distiller
    loss = distiller.distill_losses[loss_name]
    mapping = distiller.loss_forward_mappings[loss_name]
    was_training = algorithm.training
    algorithm.eval()
    try:
        data = algorithm.data_preprocessor(data, False)
        inputs, samples = data['inputs'], data['data_samples']
        with distiller.teacher_recorders, distiller.student_recorders:
            algorithm.teacher(inputs, samples, mode='tensor')
            algorithm.student(inputs, samples, mode='tensor')
        pairs = list(loss.feature_pairs(*(distiller.get_record(**mapping[key])
                                          for key in ('preds_S', 'preds_T'))))
        s, t, _ = pairs[level]  # as maps, checked and resized as the loss sees them
        # The branch's parts, not its forward: the diffusion loss is not pictured.
        branch = loss.branch(level)
        latent = branch.student_proj(s)
        generator = torch.Generator(device=s.device).manual_seed(seed)
        noise = torch.randn(latent.shape, generator=generator, device=s.device, dtype=s.dtype)
        target, _ = branch.encode_teacher(t)
        denoised, gate = branch.denoise(latent, noise)
        pre = algorithm.data_preprocessor
        normalised = getattr(pre, '_enable_normalize', False)
        return dict(inputs=inputs.float(), student=latent, denoised=branch.output_proj(denoised),
                    teacher=target, gate=gate,
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


def denoising_figure(record: dict, path: str, max_images: int = 4):
    """Save a grid: image | student | denoised student | teacher, one row per image.

    The three feature maps are drawn in one colour space: the top 3 principal components of the
    teacher's maps (as RGB), with the teacher's range, so colours compare across columns. Each
    title gives the cosine similarity of the map to the teacher's.

    Args:
        record (dict): Output of :func:`record_denoising`.
        path (str): PNG file to write.
        max_images (int): Rows to draw. Defaults to 4.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    teacher = record['teacher'].float().cpu()
    centre, basis = _pca_basis(teacher)
    proj_t = (teacher.permute(0, 2, 3, 1).reshape(-1, teacher.shape[1]).double() - centre) @ basis
    lo, hi = proj_t.quantile(0.01, dim=0), proj_t.quantile(0.99, dim=0)
    maps = {name: _project(record[name].float().cpu(), centre, basis, lo, hi)
            for name in ('student', 'denoised', 'teacher')}
    cos = {name: _cosine(record[name].float().cpu(), teacher) for name in ('student', 'denoised')}
    images = record['inputs'].cpu()
    if record.get('pixel_mean') is not None:
        images = images * torch.tensor(record['pixel_std'])[:, None, None] + \
            torch.tensor(record['pixel_mean'])[:, None, None]
    images = (images / 255.0 if images.max() > 1.5 else images).clamp(0, 1)

    rows = min(max_images, images.shape[0])
    fig, axes = plt.subplots(rows, 4, figsize=(10, 2.6 * rows), squeeze=False)
    for r in range(rows):
        cells = [
            ('image', images[r].permute(1, 2, 0).numpy()),
            (f'student (cos {cos["student"][r]:.2f})', maps['student'][r]),
            (f'denoised (cos {cos["denoised"][r]:.2f}, g={float(record["gate"][r]):.2f})',
             maps['denoised'][r]),
            ('teacher', maps['teacher'][r]),
        ]
        for ax, (title, img) in zip(axes[r], cells):
            ax.imshow(img, interpolation='nearest')
            ax.set_title(title, fontsize=8)
            ax.axis('off')
    fig.suptitle('DiffKD feature maps (top-3 PCA components of the teacher feature as RGB)',
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
