from .runner import DemoSettings, run_demo

__all__ = ['DemoSettings', 'run_demo']
