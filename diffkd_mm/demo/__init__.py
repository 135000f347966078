from .runner import ResumeConflict, TaskSeedsFailed, check_configs, run_demo, run_task
from .settings import (CONVERGED_SCHEDULES, METHODS, QUICK_SCHEDULES, SCHEDULE_PROFILES, SCHEDULES,
                       TASKS, DemoSettings, Schedule)

__all__ = [
    'CONVERGED_SCHEDULES', 'METHODS', 'QUICK_SCHEDULES', 'SCHEDULE_PROFILES', 'SCHEDULES', 'TASKS',
    'DemoSettings', 'ResumeConflict', 'Schedule', 'TaskSeedsFailed', 'check_configs', 'run_demo',
    'run_task'
]
