"""Fault injection for the kill tests (tests/test_rerun.py, tests/test_kill.py): with SCISR_TEST_KILL_AT_WRITE=N
in the environment and this folder on PYTHONPATH, every Python process SIGKILLs itself at its N-th atomic write,
after the temporary file is complete and before it is renamed into place: the worst moment for a file."""

import os

_AT = int(os.environ.get("SCISR_TEST_KILL_AT_WRITE", "0") or 0)

if _AT > 0:
    import signal

    from scisr.io.files import ATOMIC_TEMPORARY

    _replace, _count = os.replace, [0]

    def _replace_then_die(src, dst, *args, **kwargs):
        if ATOMIC_TEMPORARY.match(os.path.basename(os.fspath(src))):
            _count[0] += 1
            if _count[0] >= _AT:
                os.kill(os.getpid(), signal.SIGKILL)
        return _replace(src, dst, *args, **kwargs)

    os.replace = _replace_then_die
