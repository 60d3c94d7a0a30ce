"""Send a job's stderr, warnings and logging to its log file."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator


@contextlib.contextmanager
def log_to(path: str | os.PathLike) -> Iterator[logging.Logger]:
    """Route stderr (tracebacks, tqdm, warnings) and the `scisr` loggers to `path` for the block."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", buffering=1) as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        previous_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        old_stderr = sys.stderr
        sys.stderr = stream
        start = time.perf_counter()
        logger = logging.getLogger("scisr")
        try:
            yield logger
            logger.info("done in %.1f s", time.perf_counter() - start)
        except BaseException:
            logger.exception("failed after %.1f s", time.perf_counter() - start)
            raise
        finally:
            sys.stderr = old_stderr
            root.removeHandler(handler)
            root.setLevel(previous_level)
            logging.captureWarnings(False)
