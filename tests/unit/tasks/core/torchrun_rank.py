"""A rank for test_distributed.py's stop test, started by the real torchrun through
`tasks.core.distributed.launch`; it imports no torch, so a start costs only torchrun's own.

Writes its pid to $RANK_DIR/rank-<RANK>.pid, then waits (120 s at most) to be stopped.
"""

import os
import time
from pathlib import Path

rank = os.environ["RANK"]
(Path(os.environ["RANK_DIR"]) / f"rank-{rank}.pid").write_text(str(os.getpid()))
time.sleep(120)
