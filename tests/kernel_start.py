"""Start a Jupyter kernel again when it dies before its first reply (shared by the conftest and the tests)."""

import functools

# What jupyter_client raises when a kernel exits before its first reply: with many kernels
# starting at once, another process can take a port picked for one before it binds it
# (jupyter/jupyter_client#154). None of the notebook has run then, so a new kernel is due.
KERNEL_START_DIED = "Kernel died before replying to kernel_info"
KERNEL_START_TRIES = 3


def start_retrying(start):
    """``start`` (a kernel-starting function), called again when the kernel dies at start-up."""

    @functools.wraps(start)
    def wrapper(*args, **kwargs):
        for attempt in range(1, KERNEL_START_TRIES + 1):
            try:
                return start(*args, **kwargs)
            except RuntimeError as e:
                if KERNEL_START_DIED not in str(e) or attempt == KERNEL_START_TRIES:
                    raise

    return wrapper
