"""Real walkers of the sample video and the shared ReID test model (read, never required by the project)."""

from __future__ import annotations

from tests.unit.sample_data import REPO

FIXTURE = REPO.parent / "shared" / "fixtures" / "reid" / "osnet_x0_25_msmt17.onnx"

# SSDLite (the embedded detector, conf 0.5) on vtest.avi frames 200 and 205, rounded to pixels; the same
# three walkers in both frames (checked by eye: light-blue coat, black suit, dark jacket and jeans), plus a
# fourth walker (seen from the back) in frame 200 only.
FRAME_A, FRAME_B = 200, 205
WALKERS_A = [[72, 156, 112, 219], [701, 248, 742, 360], [615, 263, 650, 373], [211, 192, 250, 267]]
WALKERS_B = [[52, 150, 88, 221], [733, 266, 765, 377], [638, 276, 686, 412]]
