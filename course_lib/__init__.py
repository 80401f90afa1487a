"""course_lib: the shared library of the reinforcement learning course.

One small pure function per equation (``returns.discounted_returns``,
``bellman.evaluate_policy``, ...), the environments the chapters use, plot and
widget helpers, exercise checks, and the notebook build.
"""

__version__ = "0.1.0"
