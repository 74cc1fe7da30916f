"""A rank for test_distributed.py's stop tests, started by the real torchrun through
`tasks.core.distributed.launch`: joins the process group as a training rank does, writes
"<pid> <parent pid>" to $RANK_DIR/rank-<RANK>.pid, then waits (120 s at most) to be stopped.
"""

import os
import time
from pathlib import Path

from tasks.core import distributed

with distributed.process_group("gloo"):
    pids = f"{os.getpid()} {os.getppid()}"
    (Path(os.environ["RANK_DIR"]) / f"rank-{os.environ['RANK']}.pid").write_text(pids)
    time.sleep(120)
