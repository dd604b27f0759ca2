"""Still shots for validation: a photograph of the catalogue's validation split seen by a camera that
does not move, with sensor noise and a cheap camera's MPEG-4, like the test set's static fish tanks.

The fish tanks are where the learned default flickered most and lost PSNR, and no validation clip
was still; these clips let a choice about still content be made without looking at the test set.
Each photograph is scaled (Lanczos) to cover the frame and centre-cropped, then every frame gets
its own Gaussian noise (std --noise levels, seeded) and the clip is encoded with FFmpeg's mpeg4 at
-q:v --q into an AVI: the encoded clip is the clean reference, as a real camera's file would be.

    python scripts/still_shots.py ~/vir-runs/still            # drum_room and facade, 48 frames, 832x480
    python scripts/eval_restorers.py --clips ~/vir-runs/still/*.avi --models classical default
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from instantvir_cli.photos import PHOTOS, fetch_photos


def still_frames(photo: Path, width: int, height: int) -> np.ndarray:
    """The photograph scaled to cover width x height and centre-cropped: (H, W, 3) float32 levels."""
    from PIL import Image

    with Image.open(photo) as im:
        im = im.convert("RGB")
        s = max(width / im.width, height / im.height)
        im = im.resize((round(im.width * s) + 1, round(im.height * s) + 1), Image.LANCZOS)
        x, y = (im.width - width) // 2, (im.height - height) // 2
        return np.asarray(im, dtype=np.float32)[y:y + height, x:x + width]


def write_still_shot(photo: Path, out: Path, frames: int, width: int, height: int, noise: float, q: int,
                     seed: int = 0) -> None:
    """Write `frames` noisy frames of the still photograph to `out` (MPEG-4 part 2, yuv420p, 25 fps)."""
    import imageio_ffmpeg

    image = still_frames(photo, width, height)
    rng = np.random.default_rng(seed)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", "25", "-i", "-",
           "-c:v", "mpeg4", "-q:v", str(q), "-pix_fmt", "yuv420p", str(out)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    try:
        for _ in range(frames):
            frame = np.clip(image + rng.normal(0.0, noise, image.shape), 0, 255).round().astype(np.uint8)
            proc.stdin.write(frame.tobytes())
    finally:
        proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit(f"ffmpeg failed writing {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dest", type=Path, help="folder for the clips (still_NAME.avi)")
    ap.add_argument("--photos", nargs="+", default=["drum_room", "facade"], help="validation photographs")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--size", default="832x480", help="WxH")
    ap.add_argument("--noise", type=float, default=1.2, help="sensor noise std, 8-bit levels")
    ap.add_argument("--q", type=int, default=3, help="mpeg4 quantizer (-q:v)")
    args = ap.parse_args()
    wrong = [n for n in args.photos if n not in PHOTOS or PHOTOS[n].split != "val"]
    if wrong:
        raise SystemExit(f"not validation photographs: {', '.join(wrong)}")
    width, height = (int(v) for v in args.size.lower().split("x"))
    args.dest.mkdir(parents=True, exist_ok=True)
    for name, path in fetch_photos(args.photos).items():
        out = args.dest / f"still_{name}.avi"
        write_still_shot(path, out, args.frames, width, height, args.noise, args.q)
        print(out, file=sys.stdout)


if __name__ == "__main__":
    main()
