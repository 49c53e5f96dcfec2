"""Messages in, Frames out: the one place that turns a robot's camera + localisation streams into
synchronised, validated frames. The node feeds it from its subscriptions and the offline readers
(`io.bags.read_frames`, hence `gs-semantic map` and the benchmarks) from a bag, so both see the same
frames from the same messages.

- colour and depth (and the simulator's instance masks) are paired by approximate time
  (`node.sync_slop`); camera_info may come at any rate: the latest one applies;
- poses (PoseStamped, Odometry or TransformStamped, stamped by the localisation) are interpolated
  to the image stamp (linear in position, slerp in rotation) between the two poses around it, when
  those are at most `node.pose_max_gap` apart; a set waits up to `node.pose_wait` for the pose after
  it, then the nearest pose within `node.sync_slop` is taken, or the set is skipped (`pose_missing`);
- a depth image captured at another instant than the colour (its stamp + `node.depth_time_offset`)
  carries the pose of that instant too (`Frame.T_world_depth`), so the mapper can move it to the
  colour instant; a hardware-synchronised camera (same stamps) gets none;
- a rolling-shutter colour image (`node.rgb_readout`) carries the poses of its first and last row
  (`Frame.T_world_rows`), so the mapper can carry its rows to the stamp's instant (mapping.shutter);
- everything is validated by InputValidator; a rejected set becomes an InputFault handed to
  `on_fault`, never an exception out of `add_*`.
"""

from __future__ import annotations

import bisect
import collections
from typing import Callable

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from ..config import NodeConfig
from ..types import Frame
from .validate import ApproxSync, InputFault, InputValidator, pose_from_msg, stamp_seconds


class PoseBuffer:
    """Time-sorted camera poses; `at(t)` interpolates between the two around t."""

    def __init__(self, max_gap: float, size: int = 4000):
        self.max_gap = max_gap
        self.t: list[float] = []
        self.T: list[np.ndarray] = []
        self.size = size

    def add(self, t: float, T: np.ndarray):
        i = bisect.bisect(self.t, t)
        if i > 0 and self.t[i - 1] == t:
            self.T[i - 1] = T
            return
        self.t.insert(i, t)
        self.T.insert(i, T)
        if len(self.t) > self.size:
            del self.t[0], self.T[0]

    @property
    def newest(self) -> float | None:
        return self.t[-1] if self.t else None

    def at(self, t: float, slop: float) -> np.ndarray | None:
        """Interpolated pose at t; the nearest pose within `slop` when none brackets t; else None."""
        i = bisect.bisect_left(self.t, t)
        if i < len(self.t) and self.t[i] == t:
            return self.T[i]
        if 0 < i < len(self.t) and self.t[i] - self.t[i - 1] <= self.max_gap:
            t0, t1 = self.t[i - 1], self.t[i]
            a, b = self.T[i - 1], self.T[i]
            s = (t - t0) / (t1 - t0)
            out = np.eye(4)
            out[:3, 3] = (1 - s) * a[:3, 3] + s * b[:3, 3]
            out[:3, :3] = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]])))([s]).as_matrix()[0]
            return out
        near = [j for j in (i - 1, i) if 0 <= j < len(self.t) and abs(self.t[j] - t) <= slop]
        if near:
            j = min(near, key=lambda j: abs(self.t[j] - t))
            return self.T[j]
        return None

    def drop_after(self, t: float):
        i = bisect.bisect_right(self.t, t)
        del self.t[i:], self.T[i:]


class FrameAssembler:
    """Feed messages with add_image / add_camera_info / add_pose; each returns the frames completed."""

    def __init__(
        self,
        cfg: NodeConfig,
        with_gt: bool = False,
        on_fault: Callable[[InputFault], None] | None = None,
        max_pending: int = 64,
    ):
        self.cfg = cfg
        self.with_gt = with_gt
        self.validator = InputValidator(cfg)
        self.sync = ApproxSync(["rgb", "depth"] + (["gt"] if with_gt else []), cfg.sync_slop)
        self.poses = PoseBuffer(cfg.pose_max_gap)
        self.camera_info = None
        self.pending: collections.deque = collections.deque()  # (stamp, {key: msg}) waiting for a pose
        self.max_pending = max_pending
        self.on_fault = on_fault or (lambda e: None)
        self.time_jumps = 0

    # ------------------------------------------------------------ input
    def add_camera_info(self, msg) -> list[Frame]:
        self.camera_info = msg
        return self._drain()

    def add_pose(self, msg) -> list[Frame]:
        try:
            T = pose_from_msg(msg)
        except InputFault as e:
            self.on_fault(e)
            return []
        self.poses.add(stamp_seconds(msg.header) + self.cfg.pose_time_offset, T)
        return self._drain()

    def add_image(self, key: str, msg) -> list[Frame]:
        got = self.sync.add(key, stamp_seconds(msg.header), msg)
        if got is None:
            return []
        t = stamp_seconds(got["rgb"].header)
        if self.pending and t < self.pending[-1][0] - self.cfg.max_stamp_age:
            self._time_jump(t)
        self.pending.append((t, got))
        if len(self.pending) > self.max_pending:
            self.pending.popleft()
            self.on_fault(InputFault("pose_missing", f"more than {self.max_pending} frames waiting for a pose"))
        return self._drain()

    def finish(self) -> list[Frame]:
        """End of a recording: every waiting set gets the pose it can have now, or is skipped."""
        return self._drain(final=True)

    # ------------------------------------------------------------ matching
    def _drain(self, final: bool = False) -> list[Frame]:
        out = []
        while self.pending:
            t, got = self.pending[0]
            if self.camera_info is None and not final and len(self.pending) < self.max_pending:
                break  # camera_info still to come (slow rate, late start)
            newest = self.poses.newest
            waiting = newest is None or newest < t + max(0.0, self.cfg.rgb_readout) / 2
            if (
                waiting
                and not final
                and (newest is None or t - newest < self.cfg.pose_wait)
                and self._image_lead(t) < self.cfg.pose_wait
            ):
                break  # the pose after this image may still arrive
            self.pending.popleft()
            T = self.poses.at(t, self.cfg.sync_slop)
            if T is None:
                self.on_fault(
                    InputFault(
                        "pose_missing",
                        f"no camera pose around image stamp {t:.3f} "
                        f"(node.pose_topic {self.cfg.pose_topic}, "
                        f"node.pose_max_gap {self.cfg.pose_max_gap} s)",
                    )
                )
                continue
            try:
                out.append(
                    self.validator.frame(
                        got["rgb"],
                        got["depth"],
                        self.camera_info,
                        T,
                        got.get("gt"),
                        index=self.validator.accepted,
                        pose_depth=self._depth_pose(t, got["depth"]),
                        pose_rows=self._row_poses(t),
                    )
                )
            except InputFault as e:
                if e.reason == "stamp_backwards":
                    self._time_jump(t)
                self.on_fault(e)
        return out

    def _depth_pose(self, t: float, depth_msg) -> np.ndarray | None:
        """The camera pose when the depth was captured (its stamp + node.depth_time_offset), where
        that is another instant than the colour's t; None when it is the same or unknown."""
        td = stamp_seconds(depth_msg.header) + self.cfg.depth_time_offset
        if abs(td - t) < 1e-4:
            return None
        return self.poses.at(td, self.cfg.sync_slop)

    def _row_poses(self, t: float) -> tuple | None:
        """The camera poses at the first and last row of a rolling-shutter colour image stamped t
        (node.rgb_readout, the stamp its middle row's instant); None for a global shutter or unknown."""
        r = self.cfg.rgb_readout
        if r <= 0:
            return None
        first, last = self.poses.at(t - r / 2, self.cfg.sync_slop), self.poses.at(t + r / 2, self.cfg.sync_slop)
        return None if first is None or last is None else (first, last)

    def _image_lead(self, t: float) -> float:
        """How far the newest waiting image is ahead of t (images keep coming while a pose is late)."""
        return self.pending[-1][0] - t if self.pending else 0.0

    def _time_jump(self, t: float):
        """A recording restarted / the clock jumped back to t: what came from the old time line goes."""
        self.time_jumps += 1
        self.validator.reset_time()
        self.poses.drop_after(t + self.cfg.max_stamp_age)
        self.pending = collections.deque(p for p in self.pending if p[0] <= t + self.cfg.max_stamp_age)
