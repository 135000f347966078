from .diffkd_connectors import DiffKDStudentConnector, DiffKDTeacherConnector

__all__ = ['DiffKDStudentConnector', 'DiffKDTeacherConnector']
