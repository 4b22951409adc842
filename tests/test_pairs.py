import json
import os

import pytest

from relocnet.data.pairs import (PairFileError, load_pairs, resolve_video, save_pairs,
                                 seconds_to_segments, write_json_atomic)


def _pair(**over):
    p = {"pair_id": "p0", "label": "wave",
         "query": {"video": "q.mp4", "start": 0, "end": 3, "boxes": {"0": [1, 2, 30, 40]}},
         "reference": {"video": "r.mp4", "start": 0, "end": 10},
         "segments": [[2, 5]], "boxes": {"3": [[1, 1, 5, 5]]}}
    p.update(over)
    return p


def test_round_trip_normalizes_numbers_and_second_keys(tmp_path):
    path = str(tmp_path / "p.json")
    save_pairs(path, "spatio_temporal", [_pair()], seed=3)
    data = load_pairs(path)
    p = data["pairs"][0]
    assert data["task"] == "spatio_temporal" and data["seed"] == 3
    assert p["query"]["boxes"] == {0: [1.0, 2.0, 30.0, 40.0]}
    assert p["boxes"] == {3: [[1.0, 1.0, 5.0, 5.0]]}
    assert p["segments"] == [[2.0, 5.0]]
    with open(path) as f:  # files store second keys as strings
        assert list(json.load(f)["pairs"][0]["boxes"]) == ["3"]
    assert resolve_video(path, "q.mp4") == os.path.join(str(tmp_path), "q.mp4")
    assert resolve_video(path, "/abs/q.mp4") == "/abs/q.mp4"


BAD = [
    (dict(segments=[[8, 12]]), "outside the reference span"),
    (dict(segments=[[5, 5]]), "is empty"),
    (dict(boxes={"7": [[1, 1, 5, 5]]}), "not inside any ground-truth segment"),
    (dict(boxes={"3": [[5, 5, 1, 1]]}), "has no area"),
    (dict(boxes={"3": [[-1, 0, 5, 5]]}), "outside the frame"),
    (dict(boxes={"x": [[1, 1, 5, 5]]}), "not an integer second"),
    (dict(query={"video": "q.mp4", "start": 0, "end": 3}), "need 'boxes'"),
    (dict(reference={"video": "r.mp4", "start": 4, "end": 2}), "empty or negative"),
    (dict(pair_id=None, reference=None), "expected an object"),
]


@pytest.mark.parametrize("over,problem", BAD)
def test_bad_pairs_name_the_file_the_entry_and_the_problem(tmp_path, over, problem):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"task": "spatio_temporal", "pairs": [_pair(**over)]}))
    with pytest.raises(PairFileError) as e:
        load_pairs(str(path))
    assert str(path) in str(e.value) and "pairs[0]" in str(e.value) and problem in str(e.value)


def test_file_level_errors(tmp_path):
    with pytest.raises(PairFileError, match="file not found"):
        load_pairs(str(tmp_path / "missing.json"))
    bad = tmp_path / "trunc.json"
    bad.write_text('{"task": "temporal", "pairs": [')
    with pytest.raises(PairFileError, match="not valid JSON"):
        load_pairs(str(bad))
    bad.write_text(json.dumps({"task": "detect", "pairs": []}))
    with pytest.raises(PairFileError, match="expected one of"):
        load_pairs(str(bad))
    bad.write_text(json.dumps({"task": "temporal", "pairs": [_pair(), _pair()]}))
    with pytest.raises(PairFileError, match="duplicate pair_id"):
        load_pairs(str(bad))


def test_save_refuses_invalid_pairs_and_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "p.json")
    save_pairs(path, "temporal", [_pair()])
    before = open(path).read()
    with pytest.raises(PairFileError):
        save_pairs(path, "temporal", [_pair(segments=[[8, 12]])])
    assert open(path).read() == before
    assert sorted(os.listdir(tmp_path)) == ["p.json"]  # no temporary file left behind


def test_atomic_write_leaves_nothing_when_serialization_fails(tmp_path):
    path = tmp_path / "out.json"
    with pytest.raises(TypeError):
        write_json_atomic(str(path), {"x": object()})
    assert os.listdir(tmp_path) == []


def test_seconds_to_segments():
    assert seconds_to_segments([]) == []
    assert seconds_to_segments([3]) == [[3, 4]]
    assert seconds_to_segments([1, 2, 3, 7, 8, 10]) == [[1, 4], [7, 9], [10, 11]]
