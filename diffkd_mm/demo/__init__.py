from .runner import ResumeConflict, TaskSeedsFailed, check_configs, run_demo, run_task
from .settings import METHODS, QUICK_SCHEDULES, SCHEDULES, TASKS, DemoSettings, Schedule

__all__ = [
    'METHODS', 'QUICK_SCHEDULES', 'SCHEDULES', 'TASKS', 'DemoSettings', 'ResumeConflict',
    'Schedule', 'TaskSeedsFailed', 'check_configs', 'run_demo', 'run_task'
]
