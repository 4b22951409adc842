"""`relocnet relocalize` under faults: the --output directory's ownership and lock, the command
line, the feature cache's footer checksum, an unusable cache, temp files of killed runs, SIGTERM."""
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from relocnet.engine import feature_cache as fc
from relocnet.engine.feature_cache import FeatureCache
from relocnet.utils.fileio import exclusive_lock
from test_relocalize import _entry, env, make_video, run  # noqa: F401  (env is a fixture)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _argv(env, out, cache=None, *extra):
    return ["--query", env["query"], "--reference", env["ref"], *env["t"], "--no-progress",
            *(["--cache-dir", str(cache)] if cache else ["--no-cache"]), "--output", str(out),
            *extra]


def _one_error(rc, stderr):
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert rc != 0 and len(lines) == 1 and lines[0].startswith("relocnet: error: "), stderr
    return lines[0]


def test_output_with_user_files_is_refused_and_nothing_is_deleted(env, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"mine": 1}')
    (out / "notes.txt").write_text("my notes")
    rc, _, err = run(capsys, _argv(env, out))
    assert "not a relocnet result" in _one_error(rc, err) and "notes.txt" in err
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "results.json").read_text() == '{"mine": 1}'


def test_a_result_is_replaced_but_a_file_added_to_it_stops_the_run(env, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, _argv(env, out))[0] == 0
    manifest = json.loads((out / ".relocnet-output.json").read_text())
    assert "results.json" in manifest["files"] and "report.html" in manifest["files"]
    assert run(capsys, _argv(env, out))[0] == 0  # an earlier result is replaced
    assert not list(tmp_path.glob("out.*")) and not list(tmp_path.glob(".out.lock"))
    (out / "keyframes" / "my.txt").write_text("added by the user")
    rc, _, err = run(capsys, _argv(env, out))
    assert "keyframes/my.txt" in _one_error(rc, err)
    assert (out / "keyframes" / "my.txt").read_text() == "added by the user"


def test_two_runs_on_one_output_the_second_is_refused(env, tmp_path, capsys):
    out = tmp_path / "out"
    with exclusive_lock(str(tmp_path / ".out.lock"), "the other run"):
        rc, _, err = run(capsys, _argv(env, out))
    assert "another relocnet run is writing there" in _one_error(rc, err)
    assert not out.exists() and not list(tmp_path.glob("out.tmp-*"))


def test_options_after_config_overrides_and_bad_inputs(env, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--query", env["query"], "--reference", env["ref"], *env["t"], "--no-cache",
            "MODEL.RELOC.DECODER.TOP_K", "1", "--output", str(out), "--no-progress"]
    assert run(capsys, argv)[0] == 0
    assert json.loads((out / "results.json").read_text())["model"]["decoder"]["top_k"] == 1
    rc, _, err = run(capsys, _argv(env, tmp_path / "o2", None, "--bogus"))
    assert "unrecognized arguments: --bogus" in _one_error(rc, err)
    rc, _, err = run(capsys, _argv(env, tmp_path / "o3") + ["--reference", str(tmp_path)])
    assert f"reference video {tmp_path}: is a directory" in _one_error(rc, err)


def test_bad_cache_size_variable_is_named(env, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RELOCNET_CACHE_MAX_GB", "abc")
    rc, _, err = run(capsys, _argv(env, tmp_path / "out", tmp_path / "c"))
    assert "$RELOCNET_CACHE_MAX_GB='abc': expected a size in GiB" in _one_error(rc, err)


def test_every_bit_of_the_footer_is_checked(tmp_path):
    cache = FeatureCache(str(tmp_path))
    path = _entry(cache, "k" * 64).commit()
    data = open(path, "rb").read()
    n = int.from_bytes(data[-16:-8], "little")
    start = len(data) - 16 - 32 - n  # footer JSON, its SHA-256, length, end marker
    for at in range(start, len(data)):
        with open(path, "wb") as f:
            f.write(data[:at] + bytes([data[at] ^ (1 << at % 8)]) + data[at + 1:])
        assert cache.lookup("k" * 64) is None, at
        assert not os.path.exists(path) and "ignored" in cache.problems[-1]
    with open(path, "wb") as f:  # a chunk length that lies is refused before it is read
        f.write(data[:8] + (2**62).to_bytes(8, "little") + data[16:])
    assert cache.lookup("k" * 64) is None


def test_an_unusable_cache_never_stops_the_run(env, tmp_path, capsys, monkeypatch):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    rc, stdout, _ = run(capsys, _argv(env, tmp_path / "a", not_a_dir))
    assert rc == 0 and "not caching features" in stdout
    reference = json.loads((tmp_path / "a" / "results.json").read_text())["second_scores"]

    def full_disk(self):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:  # fails after every feature was computed
        m.setattr(fc.CacheWriter, "_commit", full_disk)
        rc, stdout, _ = run(capsys, _argv(env, tmp_path / "b", tmp_path / "c"))
    assert rc == 0 and "No space left on device" in stdout and not os.listdir(tmp_path / "c")
    assert run(capsys, _argv(env, tmp_path / "b", tmp_path / "c"))[0] == 0  # now cached

    chunks = fc.CacheEntry._chunks

    def fails_midway(self):
        yield from list(chunks(self))[:1]
        raise OSError("the disk went away")

    monkeypatch.setattr(fc.CacheEntry, "_chunks", fails_midway)
    rc, stdout, _ = run(capsys, _argv(env, tmp_path / "b", tmp_path / "c"))
    assert rc == 0 and "failed while read" in stdout
    again = json.loads((tmp_path / "b" / "results.json").read_text())["second_scores"]
    assert again == pytest.approx(reference, abs=1e-6)


def test_temp_files_of_dead_writers_go_live_ones_count(tmp_path):
    cache = FeatureCache(str(tmp_path), max_bytes=10_000)
    dead = tmp_path / ".tmp-dead.rfc"
    dead.write_bytes(b"x" * 100)
    live = tmp_path / ".tmp-live.rfc"
    live.write_bytes(b"x" * 9_000)
    with open(live, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # its writer is still running
        first = _entry(cache, "a" * 64).commit()  # ~2 kB each
        assert not dead.exists() and live.exists()
        second = _entry(cache, "b" * 64).commit()  # with the live 9 kB, over the cap
        assert os.path.exists(second) and not os.path.exists(first)
    cache.prune()  # its writer is gone
    assert not live.exists() and os.path.exists(second)


def test_sigterm_leaves_no_temp_files(env, tmp_path):
    ref = make_video(tmp_path / "long.mp4", 60, 3)
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["--query", env["query"], "--reference", ref, *env["t"], "--no-progress",
            "--cache-dir", str(cache), "--output", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "relocnet.cli", "relocalize", *argv],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1"))
    deadline = time.time() + 120
    while time.time() < deadline and not (cache.exists() and os.listdir(cache)):
        time.sleep(0.05)  # until it writes features
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated by signal SIGTERM" in stderr, stderr
    assert not out.exists() and not list(tmp_path.glob("out.*")) and not os.listdir(cache)


def test_a_result_written_before_manifests_is_still_replaced(env, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, _argv(env, out))[0] == 0
    os.remove(out / ".relocnet-output.json")  # as an older relocnet left it
    assert run(capsys, _argv(env, out))[0] == 0
    os.remove(out / ".relocnet-output.json")
    (out / "notes.txt").write_text("mine")
    rc, _, err = run(capsys, _argv(env, out))
    assert "notes.txt" in _one_error(rc, err) and (out / "notes.txt").read_text() == "mine"


def test_two_writers_of_one_cache_entry(tmp_path):
    """Two runs computing the same reference at once: each writes its own temp file, the entry
    is whole whichever commits last, and a reader holding the older one reads it to the end."""
    cache = FeatureCache(str(tmp_path))
    a, b = _entry(cache, "k" * 64), _entry(cache, "k" * 64)
    a.commit()
    entry = cache.lookup("k" * 64)
    chunks = entry.chunks()
    first = next(chunks)
    b.commit()  # replaces the file the reader has open
    assert [c["features"][0, 0] for c in [first, *chunks]] == [0, 1, 2]
    again = cache.lookup("k" * 64)
    assert again is not None and [c["features"][0, 0] for c in again.chunks()] == [0, 1, 2]
    assert sorted(os.listdir(tmp_path)) == ["k" * 64 + ".rfc"]
