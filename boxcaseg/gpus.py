"""GPU slots for local runs: ``python -m boxcaseg.gpus N COMMAND...`` runs COMMAND with
``CUDA_VISIBLE_DEVICES`` set to N GPUs no other job of this machine holds.

Snakemake counts GPUs (``--resources gpu=2``) but does not say WHICH card a job may use, so two
concurrent one-GPU jobs would both land on GPU 0 while GPU 1 idles. Each card has a lock file
(``$BOXCASEG_GPU_LOCKS``, default ``/tmp/boxcaseg-gpu-locks``); the first N free ones are locked
with ``flock`` (released by the kernel when the job ends, however it ends) and the command is
exec'ed with the lock files inherited. Waits while fewer than N are free.

Where the scheduler already chose (SLURM sets ``CUDA_VISIBLE_DEVICES`` for its jobs; so may the
user), nothing is done. ``BOXCASEG_LOCAL_GPUS`` overrides the number of cards on the machine.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

LOCK_DIR = Path(os.environ.get("BOXCASEG_GPU_LOCKS", "/tmp/boxcaseg-gpu-locks"))


def local_gpu_count() -> int:
    if "BOXCASEG_LOCAL_GPUS" in os.environ:
        return int(os.environ["BOXCASEG_LOCAL_GPUS"])
    import torch

    return torch.cuda.device_count()


def scheduler_chose() -> bool:
    return "CUDA_VISIBLE_DEVICES" in os.environ or "SLURM_JOB_ID" in os.environ


def acquire(
    count: int, total: int, lock_dir: Path = LOCK_DIR, poll_s: float = 1.0
) -> tuple[list[int], list[int]]:
    """Lock ``count`` of the ``total`` cards: (card indices, open lock file descriptors)."""
    if count > total:
        raise SystemExit(f"boxcaseg.gpus: {count} GPUs asked for, this machine has {total}")
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        cards, fds = [], []
        for card in range(total):
            fd = os.open(lock_dir / f"gpu{card}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            cards.append(card)
            fds.append(fd)
            if len(cards) == count:
                return cards, fds
        for fd in fds:  # not enough free: give back what we took, wait, try again
            os.close(fd)
        time.sleep(poll_s)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: python -m boxcaseg.gpus N COMMAND [ARGS...]", file=sys.stderr)
        return 2
    count, command = int(argv[0]), argv[1:]
    if count > 0 and not scheduler_chose():
        cards, fds = acquire(count, local_gpu_count())
        for fd in fds:
            os.set_inheritable(fd, True)  # the locks live as long as the command
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, cards))
        print(f"[boxcaseg] GPU(s) {os.environ['CUDA_VISIBLE_DEVICES']} for this job", flush=True)
    os.execvp(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
