"""A hostile-input video corpus, written by the tests themselves (tests/test_video_corpus.py).

Every container relocnet is likely to meet (MP4, MOV, MKV, WebM, AVI, MPEG-TS) with the codecs
PyAV encodes here: H.264 with B-frames and open GOPs (libx264), MPEG-4 Part 2 with B-frames
(FFmpeg's ``mpeg4``; in AVI *packed* the way Xvid/DivX write them, see :func:`pack_bframes`),
VP9 (libvpx-vp9) and MJPEG. Frames are 64x48 and spell their own index (``pattern``), so a test
can check that every picture comes out, once, in order. Per file: the clean file, cuts at
several points, overwritten bytes, a broken index, and a variable-frame-rate variant.
"""
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, List, Optional, Tuple

import av
import numpy as np

W, H, FPS, SECONDS = 64, 48, 12, 3
N = FPS * SECONDS

# container -> (format name, extension, codecs it takes)
CONTAINERS = {
    "mp4": ("mp4", "mp4", ["h264", "mpeg4", "vp9", "mjpeg"]),
    "mov": ("mov", "mov", ["h264", "mpeg4", "mjpeg"]),
    "mkv": ("matroska", "mkv", ["h264", "mpeg4", "vp9", "mjpeg"]),
    "webm": ("webm", "webm", ["vp9"]),
    "avi": ("avi", "avi", ["h264", "mpeg4", "mjpeg"]),
    "ts": ("mpegts", "ts", ["h264", "mpeg4"]),
}
ENCODERS = {"h264": "libx264", "mpeg4": "mpeg4", "vp9": "libvpx-vp9", "mjpeg": "mjpeg"}
# containers whose packets carry real presentation timestamps (can hold variable frame rate)
VFR_CONTAINERS = ("mp4", "mov", "mkv", "webm", "ts")
CUTS = (0.3, 0.6, 0.9)


def pattern(index: int) -> np.ndarray:
    """A flat frame whose top rows spell ``index`` in 16 black/white 8x12 cells."""
    img = np.full((H, W, 3), 90, np.uint8)
    for bit in range(16):
        r, c = divmod(bit, 8)
        img[r * 12:(r + 1) * 12, c * 8:(c + 1) * 8] = 255 if index >> bit & 1 else 0
    img[30:42, (index * 3) % 56:(index * 3) % 56 + 8] = (200, 60, 60)  # something that moves
    return img


def read_index(frame: np.ndarray) -> int:
    value = 0
    for bit in range(16):
        r, c = divmod(bit, 8)
        if frame[r * 12 + 6, c * 8 + 4].mean() > 128:
            value |= 1 << bit
    return value


def _codec_context(codec: str, time_base: Fraction):
    ctx = av.CodecContext.create(ENCODERS[codec], "w")
    ctx.width, ctx.height, ctx.time_base, ctx.framerate = W, H, time_base, Fraction(FPS)
    ctx.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    ctx.gop_size = FPS
    if codec == "h264":  # B-frames (pyramid) and open GOPs
        ctx.options = {"crf": "16", "bf": "3", "x264-params": "open-gop=1:keyint=12:min-keyint=12"}
    elif codec == "mpeg4":
        ctx.max_b_frames, ctx.options = 2, {"qscale": "3"}  # Xvid's default
        ctx.qmin = ctx.qmax = 3
    elif codec == "vp9":
        ctx.options = {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8",
                       "lag-in-frames": "0"}
    else:
        ctx.qmin = ctx.qmax = 2
    return ctx


def encode(codec: str, times: Optional[List[int]] = None, tb: Fraction = Fraction(1, FPS)):
    """(packets as (bytes, pts, dts, keyframe) in decode order, extradata) of N pattern frames
    shown at ``times`` (in ``tb``; default: frame i at i)."""
    ctx = _codec_context(codec, tb)
    ctx.open()
    out = []
    for i in range(N):
        frame = av.VideoFrame.from_ndarray(pattern(i), format="rgb24").reformat(format=ctx.pix_fmt)
        frame.pts, frame.time_base = (times[i] if times else i), tb
        out += [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in ctx.encode(frame)]
    out += [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in ctx.encode(None)]
    return out, ctx


def _nvop(bframe: bytes) -> bytes:
    """An N-VOP (a 'not coded' placeholder) with the time fields of the B-VOP ``bframe``."""
    at = bframe.find(b"\x00\x00\x01\xb6")
    bits = "".join(f"{b:08b}" for b in bframe[at + 4:at + 12])
    j = 2
    while bits[j] == "1":  # modulo_time_base
        j += 1
    inc = (FPS - 1).bit_length()  # vop_time_increment bits for a resolution of FPS
    head = "01" + bits[2:j + 1 + 1 + inc + 1] + "0"  # P type, times and markers, vop_coded = 0
    head += "0" + "1" * ((8 - (len(head) + 1) % 8) % 8)  # MPEG-4 stuffing
    return b"\x00\x00\x01\xb6" + int(head, 2).to_bytes(len(head) // 8, "big")


def pack_bframes(packets) -> List[Tuple[bytes, bool]]:
    """MPEG-4 Part 2 packets in decode order -> the packed bitstream of Xvid/DivX AVIs: a
    reference VOP travels with the first B-VOP after it in one chunk, the next B-VOPs move one
    slot earlier and the group's last slot holds an N-VOP (a placeholder), so every chunk is
    one frame time; the user data says 'DivX503b1393p' as Xvid's packed mode writes it."""
    out, i = [], 0
    while i < len(packets):
        data, pts, _, key = packets[i]
        data = data.replace(b"Lavc", b"DivX503b1393p\x00\x00\x01\xb2Lavc", 1) if key else data
        bs = []
        while i + 1 + len(bs) < len(packets) and packets[i + 1 + len(bs)][1] < pts:
            bs.append(packets[i + 1 + len(bs)][0])
        if bs:
            out += [(data + bs[0], key), *[(b, False) for b in bs[1:]], (_nvop(bs[-1]), False)]
        else:
            out.append((data, key))
        i += 1 + len(bs)
    return out


def write(path: str, container: str, codec: str, vfr: bool = False) -> str:
    fmt = CONTAINERS[container][0]
    tb = Fraction(1, 1000) if vfr else Fraction(1, FPS)
    times = vfr_times() if vfr else None
    packets, ctx = encode(codec, times, tb)
    with av.open(path, "w", format=fmt) as out:
        stream = out.add_stream(ENCODERS[codec], rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, ctx.pix_fmt
        if ctx.extradata:
            stream.codec_context.extradata = ctx.extradata
        if container == "avi" and codec == "mpeg4":
            stream.codec_context.codec_tag = "XVID"
            chunks = [(d, k, n, n) for n, (d, k) in enumerate(pack_bframes(packets))]
        else:
            chunks = [(d, k, pts, dts) for d, pts, dts, k in packets]
        for data, key, pts, dts in chunks:
            p = av.Packet(data)
            p.stream, p.pts, p.dts, p.time_base, p.is_keyframe = stream, pts, dts, tb, key
            out.mux(p)
    return path


def vfr_times() -> List[int]:
    """Milliseconds: 40 ms after every 5th frame, 120 ms after frame 10, 90 ms elsewhere."""
    t, out = 0, []
    for i in range(N):
        out.append(t)
        t += 120 if i == 10 else (40 if i % 5 == 0 else 90)
    return out


def broken_index(data: bytes, container: str) -> Optional[bytes]:
    """The file with its frame index made unusable, or None where it has none to break."""
    tags = {"mp4": b"stco", "mov": b"stco", "avi": b"idx1", "mkv": b"\x1c\x53\xbb\x6b"}
    tag = tags.get(container)
    if tag is None or tag not in data:
        return None
    at = data.rindex(tag) + len(tag)
    junk = np.random.default_rng(1).integers(0, 256, 64, np.uint8).tobytes()
    if container in ("mp4", "mov"):  # keep version/flags/count, overwrite the chunk offsets
        at += 8
    return data[:at] + junk + data[at + len(junk):]


def middle_packet(path: str) -> int:
    """Byte position of the video packet in the middle of the file's frame data."""
    with av.open(path) as c:
        pos = [p.pos for p in c.demux(c.streams.video[0]) if p.size and p.pos is not None]
    return pos[len(pos) // 2] + 8


@dataclass
class CorpusFile:
    path: str
    container: str
    codec: str
    kind: str  # clean, vfr, cut30/60/90, overwritten, index
    clean: str  # the clean file this one was made from


def build(root: str) -> Dict[str, CorpusFile]:
    """Write the whole corpus under ``root``; {name: CorpusFile}."""
    files: Dict[str, CorpusFile] = {}
    os.makedirs(root, exist_ok=True)
    for container, (_, ext, codecs) in CONTAINERS.items():
        for codec in codecs:
            stem = os.path.join(root, f"{codec}_{container}")
            clean = write(f"{stem}.{ext}", container, codec)

            def add(kind: str, data: bytes) -> None:
                path = f"{stem}_{kind}.{ext}"
                with open(path, "wb") as f:
                    f.write(data)
                files[os.path.basename(path)] = CorpusFile(path, container, codec, kind, clean)

            files[os.path.basename(clean)] = CorpusFile(clean, container, codec, "clean", clean)
            data = open(clean, "rb").read()
            for cut in CUTS:
                add(f"cut{int(cut * 100)}", data[:int(len(data) * cut)])
            mid, span = middle_packet(clean), max(64, len(data) // 20)
            junk = np.random.default_rng(0).integers(0, 256, span, np.uint8).tobytes()
            add("overwritten", data[:mid] + junk + data[mid + span:])
            index = broken_index(data, container)
            if index is not None:
                add("index", index)
            if container in VFR_CONTAINERS:
                vfr = write(f"{stem}_vfr.{ext}", container, codec, vfr=True)
                files[os.path.basename(vfr)] = CorpusFile(vfr, container, codec, "vfr", vfr)
    return files
