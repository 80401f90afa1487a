"""Run-wide settings read from the environment."""

from __future__ import annotations

import os

__all__ = ["FAST", "fast_mode"]


def fast_mode() -> bool:
    """True when COURSE_FAST is set to anything but '' or '0' (the test command sets it to 1).

    Heavy cells shrink their budgets in fast mode; the full setting is what a
    student runs, and both must still show the effect the text claims.
    """
    return os.environ.get("COURSE_FAST", "").strip() not in ("", "0")


FAST = fast_mode()
