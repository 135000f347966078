"""The demo's settings refuse bad values with a message naming the setting."""
import pytest

from diffkd_mm.demo import DemoSettings, Schedule


@pytest.mark.parametrize('kwargs, message', [
    (dict(tasks=('cls', )), "tasks: 'cls' is not one of"),
    (dict(seeds=(0, 0)), 'seeds has duplicates'),
    (dict(seeds=(-1, )), 'seeds must be ints >= 0'),
    (dict(methods=('teacher', )), "methods: 'teacher' is not a student method"),
    (dict(schedules=dict(det=Schedule(500, 0, 400, 100))), "schedules['det'].student_iters"),
    (dict(loss_weight=0), 'loss_weight must be a number > 0'),
    (dict(jobs=0), 'jobs must be a positive int, got 0'),
    (dict(jobs=True), 'jobs must be a positive int, got True'),
    (dict(jobs=1.5), 'jobs must be a positive int, got 1.5'),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace('[', r'\[').replace('(', r'\(')):
        DemoSettings(**kwargs)


def test_good_settings_pass_unchanged_and_the_rest_take_the_documented_defaults():
    settings = DemoSettings(seeds=[3, 1], jobs=2, parallel='run', loss_weight=0.5)
    assert (settings.seeds, settings.jobs, settings.parallel, settings.loss_weight) == \
        ((3, 1), 2, 'run', 0.5)
    assert settings.tasks == ('det', 'seg')
    assert settings.methods == ('student', 'fitnet', 'pkd', 'diffkd')
    assert settings.log_interval == 20
    # The demo's schedule, as README and docs/demo.md give it.
    assert [(s.teacher_iters, s.student_iters, s.num_val)
            for s in (settings.schedules['det'], settings.schedules['seg'])] == \
        [(500, 200, 100), (800, 300, 100)]


def test_the_converged_schedule_trains_students_as_long_as_teachers_on_300_images():
    from diffkd_mm.demo import SCHEDULE_PROFILES
    for task, sched in SCHEDULE_PROFILES['converged'].items():
        assert sched.student_iters >= sched.teacher_iters, task
        assert sched.num_val >= 300, task
    assert set(SCHEDULE_PROFILES) == {'main', 'converged', 'quick'}


def test_run_demo_refuses_quick_with_another_schedule():
    import os.path as osp
    import subprocess
    import sys
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    out = subprocess.run([
        sys.executable,
        osp.join(root, 'tools', 'run_demo.py'), '--quick', '--schedule', 'converged'
    ],
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert '--quick is --schedule quick; it cannot go with --schedule converged' in out.stderr
