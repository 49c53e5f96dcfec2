"""Writes .devdata/tum/ for bench/gpu_real.sh: every 2nd frame of ../shared/data/tum_fr1_xyz (the frames
`import tum --every 2` keeps), colour as lossless WebP so the frames fit the device machine's carry."""

import shutil
import sys
from pathlib import Path

from PIL import Image

src = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/tum_fr1_xyz")
dst = Path(sys.argv[2] if len(sys.argv) > 2 else ".devdata/tum")


def kept(name: str) -> tuple[list[str], list[str]]:
    lines = (src / name).read_text().splitlines()
    head = [x for x in lines if x.startswith("#")]
    rows = [x for x in lines if x and not x.startswith("#")]
    return head, rows[::2]


for sub in ("rgb", "depth"):
    (dst / sub).mkdir(parents=True, exist_ok=True)
shutil.copy(src / "groundtruth.txt", dst)
for name, webp in (("rgb.txt", True), ("depth.txt", False)):
    head, rows = kept(name)
    (dst / name).write_text("\n".join(head + rows) + "\n")
    for row in rows:
        f = row.split()[1]
        if webp:
            Image.open(src / f).save((dst / f).with_suffix(".webp"), "WEBP", lossless=True, method=6, quality=100)
        else:
            shutil.copy(src / f, dst / f)
print(f"wrote {dst}")
