"""pose-tuner: auto-tuning of pose models with TVM."""

import functools

__version__ = "0.5.4"


@functools.cache
def build_version() -> str:
    """``__version__`` plus the git commit when running from a checkout (``0.1.0+g1a2b3c4``,
    ``.dirty`` with local changes): what every record stores, so that a regression can be
    traced to a change of the tool. Points are re-measured when ``__version__`` changes,
    not on every commit."""
    import os
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(os.path.join(root, ".git")):
        return __version__
    try:
        sha = subprocess.run(["git", "-C", root, "rev-parse", "--short=8", "HEAD"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}{'.dirty' if dirty else ''}" if sha else __version__
