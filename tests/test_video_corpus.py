"""relocnet.data.video on a hostile-input corpus (tests/video_corpus.py): every container and
codec PyAV writes here, clean, cut, overwritten, with a broken index, and with variable frame
rate. Clean files decode fully, in order; damaged ones raise a one-line VideoDecodeError that
names the file and (for damage part-way) the seconds; nothing is silently shortened."""
import av
import pytest

import video_corpus as vc
from relocnet.data.video import VideoDecodeError, iter_frames, probe_video, read_subclips

WHOLE_FILE_PROBLEMS = ("not a video", "truncated MP4", "no decodable frames", "incomplete MP4")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    return vc.build(str(tmp_path_factory.mktemp("corpus")))


def _indices(path):
    return [vc.read_index(frame) for _, frame in iter_frames(path, vc.FPS)]


def test_corpus_covers_every_container_and_codec(corpus):
    combos = {(f.container, f.codec) for f in corpus.values()}
    assert combos == {(c, k) for c, (_, _, codecs) in vc.CONTAINERS.items() for k in codecs}
    kinds = {f.kind for f in corpus.values()}
    assert kinds == {"clean", "vfr", "cut30", "cut60", "cut90", "overwritten", "index"}


def test_clean_files_decode_fully_in_order(corpus):
    for name, f in sorted(corpus.items()):
        if f.kind != "clean":
            continue
        got = _indices(f.path)
        assert len(got) == vc.N and got == sorted(got), name
        # AVI has no presentation times: with B-frames FFmpeg starts its clock one frame late
        slack = 1 if f.container == "avi" and f.codec != "mjpeg" else 0
        assert all(abs(i - k) <= slack for k, i in enumerate(got)), (name, got)
        assert len(set(got)) >= vc.N - slack, name
        assert read_subclips(f.path, 4, (24, 32)).shape == (vc.SECONDS, 4, 24, 32, 3)


def test_variable_frame_rate_files_show_the_frame_of_each_sample_time(corpus):
    ms = vc.vfr_times()
    for name, f in sorted(corpus.items()):
        if f.kind != "vfr":
            continue
        got = _indices(f.path)
        want = [max(i for i, t in enumerate(ms) if t <= (k + 0.5) / vc.FPS * 1000 + 1e-6)
                for k in range(len(got))]
        assert got == want, name
        assert len(got) >= int(ms[-1] / 1000 * vc.FPS), name


def test_avi_with_packed_bframes_is_what_xvid_writes(corpus):
    """The packed AVI really has packet and picture timestamps in different orders."""
    path = corpus["mpeg4_avi.avi"].path
    with av.open(path) as c:
        s = c.streams.video[0]
        packets, pictures = [], []
        for p in c.demux(s):
            packets.append(p.pts)
            pictures += [f.pts for f in p.decode()]
    assert len(pictures) == vc.N and s.frames == vc.N
    assert pictures != sorted(pictures) and pictures != [p for p in packets if p is not None]
    assert b"DivX503b1393p" in open(path, "rb").read()


def test_damaged_files_raise_one_line_or_decode_like_the_clean_file(corpus):
    for name, f in sorted(corpus.items()):
        if f.kind in ("clean", "vfr"):
            continue
        try:
            got = _indices(f.path)
        except VideoDecodeError as exc:
            msg = str(exc)
            assert "\n" not in msg and msg.startswith(f.path), (name, msg)
            assert exc.bad_seconds or exc.problem.startswith(WHOLE_FILE_PROBLEMS), (name, msg)
            if exc.bad_seconds:
                assert "seconds" in msg and set(exc.bad_seconds) <= set(range(vc.SECONDS)), msg
            continue
        # a cut that only took a trailing index (AVI idx1) leaves every frame: not shortened
        assert got == _indices(f.clean), f"{name}: decoded, but not like the clean file"


def test_cut_files_are_never_silently_shorter(corpus):
    """The cut AVI keeps its header's frame count: reported as truncated, not a shorter video."""
    for name in ("mjpeg_avi_cut60.avi", "mjpeg_avi_cut90.avi", "h264_avi_cut90.avi",
                 "h264_ts_cut90.ts", "mpeg4_ts_cut60.ts"):
        path = corpus[name].path
        with pytest.raises(VideoDecodeError, match=r"(truncated|cut short).*") as err:
            read_subclips(path, 4)
        assert err.value.bad_seconds and err.value.bad_seconds[-1] <= vc.SECONDS - 1
        if name.endswith(".avi"):
            assert probe_video(path).duration == pytest.approx(vc.SECONDS)


def test_reading_from_a_later_start_shows_the_same_frames(corpus):
    """Seeks land on keyframes (open GOPs, packed B-frames) without reporting damage; the
    frames equal those of a read from 0 (packed AVI: the first may be the next one, its
    predecessor being a B-frame that cannot be decoded after the seek)."""
    for name, f in sorted(corpus.items()):
        if f.kind not in ("clean", "vfr"):
            continue
        full = _indices(f.path)
        for start in (1.0, 1.5, 2.0):
            got = [vc.read_index(x) for _, x in iter_frames(f.path, vc.FPS, None, start)]
            want = full[round(start * vc.FPS):]
            assert len(got) == len(want) and got[1:] == want[1:], (name, start)
            assert got[0] - want[0] in ((0, 1) if f.container == "avi" else (0,)), (name, start)


def test_transport_stream_packets_lost_in_the_middle_are_found(corpus):
    """FFmpeg resynchronizes after overwritten TS packets and the decoder conceals the loss;
    the continuity counters tell."""
    for name in ("h264_ts_overwritten.ts", "mpeg4_ts_overwritten.ts"):
        with pytest.raises(VideoDecodeError, match="transport-stream packets lost") as err:
            _indices(corpus[name].path)
        assert 1 in err.value.bad_seconds and 0 not in err.value.bad_seconds
    for name in ("h264_ts.ts", "h264_ts_vfr.ts", "mpeg4_ts.ts"):
        _indices(corpus[name].path)  # no false alarm
