"""``python -m pose_tuner.training ...``: train a zoo model (:mod:`pose_tuner.training.cli`)."""

import sys

from pose_tuner.training.cli import main

sys.exit(main())
