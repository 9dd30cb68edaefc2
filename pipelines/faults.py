"""Named crash points, for the crash suite: a process told to crash at one dies there.

A point is reached by `crash_here(settings, name)`. When `Settings.crash_point` names it,
the process sends itself SIGKILL: a real `kill -9` at a deterministic moment, with no
clean-up run, exactly as a lost machine or the OOM killer would stop it.
"""

from __future__ import annotations

import os
import signal

from pipelines.settings import Settings


def crash_here(settings: Settings, point: str) -> None:
    """Die by SIGKILL if the settings name this point (never, outside the crash suite)."""
    if settings.crash_point == point:
        os.kill(os.getpid(), signal.SIGKILL)
