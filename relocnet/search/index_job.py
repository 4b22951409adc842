"""The job behind `relocnet index`, run by every process that Detectron2's ``launch`` starts.

Each rank indexes its share of the sorted video list (``paths[rank::world]``) into its own
shard catalog ``IDX/shard-<rank>.sqlite``; after a barrier, rank 0 merges the shards into
``IDX/catalog.sqlite`` in one transaction, drops the rows of files gone from the list, deletes
the shards and publishes a new FAISS snapshot. Rank 0 first merges the shards a killed run left
behind (every finished video of it, nothing half-written), so a rerun resumes where it stopped.
Several machines need ``IDX`` and the videos on a shared filesystem.
"""
import glob
import os
import sys
import time
from typing import Any, Callable, Dict, List

import torch
from detectron2.utils import comm
from tqdm import tqdm

from ..engine.feature_cache import model_digest
from ..engine.inference import load_model
from .catalog import Catalog, VideoRow
from .descriptors import video_descriptors
from .indexer import build_snapshot, index_videos

__all__ = ["index_main", "merge_shards", "model_meta", "summary_lines"]


def merge_shards(root: str, archive: Catalog, keep: List[str] = None) -> None:
    """Merge every shard catalog of ``root`` into ``archive`` (then delete the shards)."""
    files = sorted(glob.glob(os.path.join(root, "shard-*.sqlite")))
    shards = [Catalog(f) for f in files]
    archive.merge(shards, keep)
    for shard, f in zip(shards, files):
        shard.close()
        for extra in ("", "-journal", "-wal", "-shm"):
            if os.path.exists(f + extra):
                os.remove(f + extra)


def model_meta(cfg, model, config_file: str, weights: str, overlap: int) -> Dict[str, str]:
    """What an archive's descriptors depend on (checked on every run), plus the model's files."""
    channels = model.backbone.output_shape()["features"].channels
    dim = model.second_descriptors(torch.zeros(1, channels, 2, 2)).shape[1]
    return {"model": model_digest(cfg, model), "overlap": str(overlap), "dim": str(dim),
            "config_file": os.path.abspath(config_file),
            "weights": os.path.abspath(weights) if weights else ""}


def _progress(rank: int, total: int, disable: bool) -> Callable[[VideoRow, bool], None]:
    """A tqdm bar over videos with hours of video indexed per hour of wall time."""
    bar = tqdm(total=total, unit="video", file=sys.stderr, disable=disable, position=rank,
               desc=f"indexing (rank {rank})", dynamic_ncols=True)
    state = {"t0": time.perf_counter(), "seconds": 0}

    def update(row: VideoRow, changed: bool) -> None:
        if changed and row.error is None:
            state["seconds"] += row.seconds
        rate = state["seconds"] / max(1e-9, time.perf_counter() - state["t0"])
        bar.set_postfix_str(f"{state['seconds'] / 3600:.2f} h of video, {rate:.1f} h/h")
        bar.update(1)
        if row.error:
            tqdm.write(f"relocnet: skipped (cannot decode): {row.error}", file=sys.stderr)
        if bar.n == total:
            bar.close()
    return update


def index_main(args, cfg, result: Dict[str, Any]) -> None:
    """One rank's share of `relocnet index` over ``args.video_list`` (``result`` gets rank 0's
    summary in-process)."""
    rank, world = comm.get_rank(), comm.get_world_size()
    model = load_model(cfg, args.weights)
    root = os.path.abspath(args.index)
    v = cfg.INPUT.VIDEO
    wanted = model_meta(cfg, model, args.config_file, args.weights, args.overlap)
    if rank == 0:
        os.makedirs(root, exist_ok=True)
        archive = Catalog(os.path.join(root, "catalog.sqlite"))
        archive.check_meta({k: wanted[k] for k in ("model", "overlap", "dim")})
        merge_shards(root, archive)  # what a killed run finished
    comm.synchronize()
    if rank != 0:
        archive = Catalog(os.path.join(root, "catalog.sqlite"))
    paths = args.video_list
    mine = paths[rank::world]
    shard = Catalog(os.path.join(root, f"shard-{rank:04d}.sqlite"))
    t0 = time.perf_counter()

    def describe(path: str):
        return video_descriptors(model, path, fps=v.FPS, size=(v.HEIGHT, v.WIDTH),
                                 overlap=args.overlap)

    counts = index_videos(mine, archive, shard, describe,
                          _progress(rank, len(mine), args.no_progress or not mine))
    shard.close()
    elapsed = time.perf_counter() - t0
    gathered = comm.gather((counts, elapsed), dst=0)
    if rank == 0:
        merge_shards(root, archive, keep=paths)
        meta = build_snapshot(root, archive, wanted)
        archive.close()
        result.update(meta=meta, counts={k: sum(c[k] for c, _ in gathered) for k in counts},
                      seconds=max(e for _, e in gathered), world=world)
        for line in summary_lines(result):
            print(line)
    comm.synchronize()


def summary_lines(result: Dict[str, Any]) -> List[str]:
    """What `relocnet index` prints: counts, skipped files, the index and the throughput."""
    meta, c = result["meta"], result["counts"]
    lines = [f"skipped (cannot decode): {e['error']}" for e in meta["errors"]]
    lines.append(f"{c['indexed']} videos indexed, {c['unchanged']} unchanged, {c['failed']} "
                 f"failed; {result['seconds']:.1f} s on {result['world']} process(es)")
    lines.append(f"index: {len(meta['videos'])} videos, {meta['hours']:.3f} h "
                 f"({meta['ntotal']} seconds), {meta['description']}, "
                 f"{meta['index_bytes'] / 2**20:.1f} MiB")
    return lines
