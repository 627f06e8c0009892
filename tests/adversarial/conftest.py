"""The adversarial suite: each case runs in its own process (``_harness.run_case``) with a
wall-clock and a memory bound, so a hang or an abort of the host fails the case, not the run."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
