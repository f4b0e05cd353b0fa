"""Suite-wide settings, applied before torch is imported by any test module."""

import os

# Idle OpenMP threads sleep instead of spinning: tests start subprocesses (torchrun, resumed runs)
# beside the main one, and spinning threads on 2 oversubscribed cores slowed the suite several-fold.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
