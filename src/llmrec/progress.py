"""When progress bars show: asked for, and on a screen someone watches.

A bar is drawn when the caller asks for one (``train.progress``, ``--quiet`` off) and stderr is a terminal, or the
code runs in a Jupyter kernel (whose stderr is no terminal, yet shows tqdm's notebook bars). Redirected to a file
or a pipe (a log, CI, ``2> err.txt``), no bar: a log gets the one line per epoch / trial instead.

Standard library only: the CLI imports it before torch.
"""

from __future__ import annotations

import sys

__all__ = ["bar_disabled", "in_notebook"]


def in_notebook() -> bool:
    """True inside a Jupyter (IPython kernel) session."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def bar_disabled(enabled: bool) -> bool:
    """tqdm's ``disable`` for a bar the caller wants (`enabled`) on stderr: shown on a terminal or in a notebook."""
    if not enabled:
        return True
    if in_notebook():
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return not (callable(isatty) and isatty())
