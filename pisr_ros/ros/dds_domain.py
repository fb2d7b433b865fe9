"""A DDS domain of its own for a test run or the demo: a ROS_DOMAIN_ID that no other run on this
machine holds, with discovery kept to this machine.

    python -m pisr_ros.ros.dds_domain COMMAND [ARG...]

runs COMMAND with ROS_DOMAIN_ID set to a free domain and ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST.
A domain is held through an exclusive lock on one file per domain id; the command inherits the
locked file, so the domain stays taken until the command (and whatever keeps the file open)
ends, and the lock goes with the process however it ends. Only runs that claim their domain here
see each other's claims: a process started with a fixed ROS_DOMAIN_ID is not known to this.
"""
from __future__ import annotations

import fcntl
import os
import random
import sys
import tempfile
from pathlib import Path

# ROS 2 documents domain ids 0-101 as safe on Linux: above them, the ports DDS derives from the
# id fall into the kernel's ephemeral range (32768-60999), where any outgoing connection may
# already hold them. 0 is every ROS process's default, so a run keeps out of it.
DOMAINS = range(1, 102)
LOCK_DIR = Path(tempfile.gettempdir()) / "pisr_ros-dds-domains"


class NoFreeDomain(RuntimeError):
    pass


def claim(lock_dir: Path = LOCK_DIR, domains=DOMAINS, rng: random.Random | None = None) -> tuple[int, int]:
    """A free domain id and the descriptor of its locked file; the domain is held while that
    descriptor is open (in this process or one it was handed to)."""
    if not lock_dir.is_dir():
        lock_dir.mkdir(parents=True, exist_ok=True)
        # Domains are the machine's, not one user's: every user's runs take their locks here.
        try:
            os.chmod(lock_dir, 0o1777)
        except OSError:
            pass
    order = list(domains)
    # A random start, so that runs which do not lock (a fixed ROS_DOMAIN_ID) are rarely met.
    start = (rng or random.Random()).randrange(len(order))
    for domain in order[start:] + order[:start]:
        # Read-only is enough for flock, and opens a lock file another user created.
        fd = os.open(lock_dir / f"domain-{domain}.lock", os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return domain, fd
    raise NoFreeDomain(f"every DDS domain {domains.start}-{domains.stop - 1} is held by another run "
                       f"(lock files in {lock_dir}); wait for one to end, or set ROS_DOMAIN_ID yourself")


def isolate(environ=os.environ) -> int | None:
    """Give this process (and the processes it starts) a domain of its own unless ROS_DOMAIN_ID is
    set already, and localhost discovery unless a range is set. Returns the descriptor that holds
    the claimed domain (keep it open), or None when the caller's ROS_DOMAIN_ID stands."""
    environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if environ.get("ROS_DOMAIN_ID"):
        return None
    domain, fd = claim()
    environ["ROS_DOMAIN_ID"] = str(domain)
    return fd


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    try:
        domain, fd = claim()
    except NoFreeDomain as exc:
        print(f"dds_domain: {exc}", file=sys.stderr)
        return 2
    os.set_inheritable(fd, True)
    os.environ.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"dds_domain: cannot run {argv[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
