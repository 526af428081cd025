from tests.support.coverage import untraced_subprocesses  # noqa: F401 (an autouse fixture: benchmark servers untraced)
