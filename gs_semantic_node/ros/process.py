"""The node as a child process, watched: what the demo, the load benchmark and the tests start it with.

Every wait on the node (its services coming up, a condition on /diagnostics) checks the process at
least twice a second, so a node that dies fails its caller within a second or two, with the tail of
its log, instead of after the caller's timeout.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable


class NodeExited(RuntimeError):
    """The node process ended while something waited on it."""


def ros_env(domain: int | None = None) -> dict:
    """This process's environment with DDS kept on loopback and a domain of its own."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("ROS_DOMAIN_ID", str(domain if domain is not None else random.randint(100, 199)))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def use_ros_env(env: dict) -> None:
    """Make this process (its own rclpy clients) join the node's loopback domain."""
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})


class NodeProcess:
    def __init__(self, params: str, overrides: list[str], log: Path, env: dict | None = None):
        self.log = Path(log)
        self.env = env or ros_env()
        cmd = [sys.executable, "-m", "gs_semantic_node.ros.node", "--ros-args", "--params-file", str(params)]
        for o in overrides:
            cmd += ["-p", o]
        self._log_file = open(self.log, "w")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def check(self) -> None:
        """Raise NodeExited (with the end of the node's log) if the node is no longer running."""
        code = self.proc.poll()
        if code is not None:
            raise NodeExited(f"the gs_semantic node exited (code {code}); the end of {self.log}:\n{self.tail()}")

    def wait_for_service(self, client, timeout: float) -> None:
        """client.wait_for_service in short slices, watching the process."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            self.check()
            if client.wait_for_service(timeout_sec=0.5):
                return
        self.check()
        raise TimeoutError(
            f"service {client.srv_name} did not come up in {timeout:.0f} s; the end of {self.log}:\n{self.tail()}"
        )

    def wait_until(self, cond: Callable[[], bool], timeout: float, spin: Callable[[], None] = lambda: None) -> bool:
        """Spin + test `cond` until true (True) or `timeout` (False), watching the process."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            self.check()
            spin()
            if cond():
                return True
        return False

    def stop(self, timeout: float = 5.0) -> float:
        """SIGTERM and wait; returns the seconds it took (killed after `timeout`)."""
        t = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return time.monotonic() - t
