"""``python -m pose_tuner.cli``."""

import sys

from pose_tuner.cli import main

sys.exit(main())
