from .configs import check_configs
from .records import ResumeConflict
from .run_pool import TaskSeedsFailed
from .runner import run_demo
from .settings import (CONVERGED_SCHEDULES, METHODS, QUICK_SCHEDULES, SCHEDULE_PROFILES, SCHEDULES,
                       TASKS, DemoSettings, Schedule)
from .task import run_task

__all__ = [
    'CONVERGED_SCHEDULES', 'METHODS', 'QUICK_SCHEDULES', 'SCHEDULE_PROFILES', 'SCHEDULES', 'TASKS',
    'DemoSettings', 'ResumeConflict', 'Schedule', 'TaskSeedsFailed', 'check_configs', 'run_demo',
    'run_task'
]
