"""`python -m pipelines` run in the test's own process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def restored_umask() -> Iterator[None]:
    """`cli.main` sets the private umask of a command's process; this one runs on after."""
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        yield
    finally:
        os.umask(umask)
