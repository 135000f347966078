"""Every bad setting of DiffKD's loss entries, connectors and warm-up hook ends in one ValueError
that names the key: no stack trace from deep inside torch, no bad value silently taken.

The grid: each setting of each registered module, crossed with the kinds of wrong values a
config can hold for it (a float or None for a count, a string or a number for a flag, NaN,
negative, infinite or string weights, unknown choices).
"""
import math

import pytest

from diffkd_mm.engine import DiffKDWarmupHook
from diffkd_mm.models import (DiffKDDiffusionLoss, DiffKDLoss, DiffKDStudentConnector,
                              DiffKDTeacherConnector)

BAD_COUNTS = (2.5, None, '16', True, 0, -1, [16], [16, 2.5])
BAD_FLAGS = ('no', 'x', 1, 0, None)
BAD_WEIGHTS = (math.nan, -1.0, math.inf, 'a', True, None)
BAD_POSITIVE = (0, -1.0, 'a', True, math.nan)

LOSS = dict(
    student_channels=BAD_COUNTS,
    teacher_channels=BAD_COUNTS,
    num_levels=(0, 2.5, True, '2', None),
    ae_channels=(2.5, '16', True, 0, [16], [16, 2.5]),
    share_branch=BAD_FLAGS,
    with_cp=BAD_FLAGS,
    output_norm=BAD_FLAGS,
    kd_trains_predictor=BAD_FLAGS,
    loss_weight=BAD_WEIGHTS,
    ddim_loss_weight=BAD_WEIGHTS,
    ae_loss_weight=BAD_WEIGHTS,
    student_match_weight=BAD_WEIGHTS,
    denoised_pull_weight=BAD_WEIGHTS,
    tau=BAD_POSITIVE,
    pull_tau=BAD_POSITIVE,
    inference_steps=(0, 2.5, True, '5', None),
    num_train_timesteps=(1, 2.5, True, '1000'),
    schedule_steps=(2, 2.5, True),
    kernel_size=(2, '3', True, None),
    kd_predictor_ema=(1.5, 0.0, True, '0.9'),
    start_noise=('x', None),
    target_norm=('x', 'chanel'),
    kd_loss=('l2', None),
    denoised_pull=('kl', None),
    resize_student=('linear', True),
    nonfinite=('warn', None),
)
STUDENT_CONNECTOR = dict(
    student_channels=BAD_COUNTS,
    latent_channels=BAD_COUNTS,
    num_levels=(0, 2.5, True, '2'),
    share_branch=BAD_FLAGS,
    with_cp=BAD_FLAGS,
    output_norm=BAD_FLAGS,
    inference_steps=(0, 2.5, True),
    kernel_size=(2, True),
    start_noise=('x', ),
)
TEACHER_CONNECTOR = dict(
    teacher_channels=BAD_COUNTS,
    num_levels=(0, 2.5, True),
    ae_channels=(2.5, '16', True, 0, [16], [16, 2.5]),
    target_norm=('x', ),
)
DIFFUSION_LOSS = dict(
    student_connector=(None, 3, ['s']),
    teacher_connector=(3, ['t']),
    ddim_loss_weight=BAD_WEIGHTS,
    loss_weight=(math.nan, -1.0, 'a', True),
    ae_loss_weight=BAD_WEIGHTS,
    nonfinite=('warn', ),
)
WARMUP_HOOK = dict(
    iters=(0, 2.5, True, '100', None),
    optimizer=('AdamW', dict(lr=1e-3)),
    cache=BAD_FLAGS,
    cache_dir=(3, ['d']),
    log_interval=(0, 2.5, True),
)


def _cases(build, grid):
    return [
        pytest.param(build, key, value, id=f'{build.__name__}-{key}={value!r}')
        for key, values in grid.items() for value in values
    ]


def _loss(**bad):
    return DiffKDLoss(**{**dict(student_channels=16, teacher_channels=16, num_levels=2), **bad})


def _student_connector(**bad):
    return DiffKDStudentConnector(**{
        **dict(student_channels=16, latent_channels=16, num_levels=2),
        **bad
    })


def _teacher_connector(**bad):
    return DiffKDTeacherConnector(**{**dict(teacher_channels=16, num_levels=2), **bad})


def _diffusion_loss(**bad):
    return DiffKDDiffusionLoss(**{**dict(student_connector='diffkd_s'), **bad})


def _warmup_hook(**bad):
    return DiffKDWarmupHook(**{**dict(iters=10), **bad})


@pytest.mark.parametrize('build, key, value', [
    *_cases(_loss, LOSS),
    *_cases(_student_connector, STUDENT_CONNECTOR),
    *_cases(_teacher_connector, TEACHER_CONNECTOR),
    *_cases(_diffusion_loss, DIFFUSION_LOSS),
    *_cases(_warmup_hook, WARMUP_HOOK),
])
def test_a_bad_setting_ends_in_one_error_naming_its_key(build, key, value):
    settings = {key: value}
    if key == 'kd_predictor_ema':
        settings['kd_trains_predictor'] = False  # so that the average itself is checked
    with pytest.raises(ValueError) as err:
        build(**settings)
    assert key in str(err.value), str(err.value)


@pytest.mark.parametrize(
    'build', [_loss, _student_connector, _teacher_connector, _diffusion_loss, _warmup_hook])
def test_the_good_defaults_build(build):
    build()  # the grid's errors come from the bad value, not from the base settings
