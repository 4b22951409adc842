"""Write RGB frames to an H.264 mp4 file through PyAV, atomically (temp file + rename)."""
from typing import Iterable

import av
import numpy as np

from ..utils.fileio import atomic_path

__all__ = ["write_video"]


def _check_frame(path: str, i: int, frame, size) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{path}: frame {i} must be a uint8 HxWx3 RGB array, "
                         f"got dtype {arr.dtype} shape {arr.shape}")
    if size is not None and arr.shape[:2] != size:
        raise ValueError(f"{path}: frame {i} has size {arr.shape[:2]}, frame 0 had {size}")
    return np.ascontiguousarray(arr)


def write_video(path: str, frames: Iterable[np.ndarray], fps: int, crf: int = 23, *,
                preset: str = "veryfast", threads: int = 1, x264_params: str = "") -> None:
    """Encode ``frames`` (uint8 HxWx3 RGB, all the same even size) as H.264 (libx264, yuv420p).

    Frame i is shown at time i / fps. The file appears at ``path`` only when complete: frames are
    encoded into a temporary file in the same directory, which is then renamed. ``preset``,
    ``threads`` and ``x264_params`` ("key=value:key=value") are passed to libx264.

    Raises:
        ValueError: no frames, frames of a bad dtype/shape/size, odd width/height, or fps < 1.
    """
    if int(fps) != fps or fps < 1:
        raise ValueError(f"{path}: fps must be a positive integer, got {fps!r}")
    n = 0
    with atomic_path(path, ".mp4") as tmp:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = None
            size = None
            for i, frame in enumerate(frames):
                arr = _check_frame(path, i, frame, size)
                if stream is None:
                    size = arr.shape[:2]
                    h, w = size
                    if h % 2 or w % 2:
                        raise ValueError(f"{path}: yuv420p needs an even width and height, got {w}x{h}")
                    stream = container.add_stream("libx264", rate=int(fps))
                    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                    stream.options = {"crf": str(int(crf)), "preset": preset, "threads": str(threads)}
                    if x264_params:
                        stream.options = dict(stream.options, **{"x264-params": x264_params})
                vf = av.VideoFrame.from_ndarray(arr, format="rgb24")
                vf.pts = i
                container.mux(stream.encode(vf))
                n += 1
            if stream is None:
                raise ValueError(f"{path}: no frames to write")
            container.mux(stream.encode(None))
