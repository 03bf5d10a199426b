"""Nightly tuning jobs: ``tuner nightly --config nightly.toml``.

``config`` reads the TOML file, ``queue`` is the night's work in the database (shared by
any number of workers), ``run`` plans and does the work, ``report`` compares the night
with the previous one and writes the HTML / Markdown report. Import ``run_nightly`` from
``pose_tuner.nightly.run`` (it loads the search machinery).
"""

from pose_tuner.nightly.config import JobConfig, NightlyConfig, NightlyConfigError, load_config
from pose_tuner.nightly.queue import NightlyError

__all__ = ["JobConfig", "NightlyConfig", "NightlyConfigError", "NightlyError", "load_config"]
