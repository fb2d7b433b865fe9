"""pisr_ros.ros.dds_domain: each run gets a DDS domain no other run holds, in the safe range."""
from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from pisr_ros.ros.dds_domain import DOMAINS, LOCK_DIR, NoFreeDomain, claim, isolate


def test_domains_are_the_safe_range_without_the_default():
    # ROS 2 on Linux: ids 0-101 keep DDS's ports below the ephemeral range; 0 is everyone's default.
    assert min(DOMAINS) == 1 and max(DOMAINS) == 101


def test_claims_are_exclusive_until_released(tmp_path):
    held = [claim(tmp_path, range(1, 4), random.Random(seed)) for seed in range(3)]
    assert sorted(d for d, _ in held) == [1, 2, 3]
    with pytest.raises(NoFreeDomain, match="every DDS domain 1-3 is held"):
        claim(tmp_path, range(1, 4))
    domain, fd = held.pop(1)
    os.close(fd)  # the run that held it ends
    again, fd = claim(tmp_path, range(1, 4))
    assert again == domain
    for _, other in held + [(again, fd)]:
        os.close(other)


def test_isolate_keeps_what_the_caller_set(tmp_path):
    env = {}
    fd = isolate(env)
    try:
        assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST" and int(env["ROS_DOMAIN_ID"]) in DOMAINS
    finally:
        os.close(fd)
    env = {"ROS_DOMAIN_ID": "42", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    assert isolate(env) is None and env == {"ROS_DOMAIN_ID": "42", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}


def test_this_run_is_isolated():
    # test/conftest.py applies isolate() to every pytest run.
    assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") and os.environ.get("ROS_DOMAIN_ID")


def test_the_command_holds_its_domain_while_it_runs():
    """`python -m pisr_ros.ros.dds_domain CMD`: CMD inherits the lock, so no other run can take its
    domain until CMD ends."""
    probe = ("import os, sys; print(os.environ['ROS_DOMAIN_ID'], os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']);"
             "sys.stdout.flush(); sys.stdin.read()")
    env = {k: v for k, v in os.environ.items() if k != "ROS_DOMAIN_ID"}
    run = subprocess.Popen([sys.executable, "-m", "pisr_ros.ros.dds_domain", sys.executable, "-c", probe],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        domain, scope = run.stdout.readline().split()
        assert scope == "LOCALHOST" and int(domain) in DOMAINS
        with pytest.raises(NoFreeDomain):
            claim(LOCK_DIR, range(int(domain), int(domain) + 1))
    finally:
        run.communicate("", timeout=60)  # the command ends: its domain is free again
    _, fd = claim(LOCK_DIR, range(int(domain), int(domain) + 1))
    os.close(fd)


def test_a_command_that_does_not_exist_is_one_line():
    done = subprocess.run([sys.executable, "-m", "pisr_ros.ros.dds_domain", "no-such-command-here"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 127 and done.stderr.count("\n") == 1 and "no-such-command-here" in done.stderr
