"""Running `vir` in-process for CLI tests."""

from __future__ import annotations

from typer.testing import CliRunner

from instantvir_cli.cli import app

runner = CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"})


def vir(*args: str, input: bytes | None = None):
    """Invoke `vir ARGS...` (`input`: the bytes on stdin); returns Click's Result (exit_code, stdout, stderr)."""
    return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


def assert_one_line_error(result, code: int) -> None:
    """The command failed with `code`, printing exactly one line on stderr and no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def write_mask(path, masks) -> None:
    """Write uint8 keep-masks: (H, W) as a PNG image, (T, H, W) as a lossless FFV1 video."""
    import av
    import numpy as np

    masks = np.asarray(masks, dtype=np.uint8)
    frames = masks[None] if masks.ndim == 2 else masks
    with av.open(str(path), "w") as c:
        s = c.add_stream("png") if masks.ndim == 2 else c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "gray"
        for m in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(m, format="gray")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
