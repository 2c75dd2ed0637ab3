"""zarr-python side of `nx run scroll-io:bench`.

  zarr_bench.py write DIR D H W CHUNK   writes a CT-like uint8 volume into DIR/<store> for every store
  zarr_bench.py serve DIR PLAN.json     times one pass of a row of the plan per "STORE ROW" line on
                                        stdin, one JSON line out per pass

The reads mirror bench.ts exactly (same regions, one read at a time, no caching in either reader), and
bench.ts alternates its passes with these.
"""
import json
import sys
import time

import numcodecs
import numpy as np
import zarr

STORES = {
    "blosc-lz4": lambda: numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
    "blosc-zstd": lambda: numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE),
    "zstd": lambda: numcodecs.Zstd(level=3),
    "raw": lambda: None,
}


def ct_like(shape, seed=0):
    """Scroll-like CT: masked air (0) outside a cylinder, papyrus sheets (wavy layers) with fibre texture, noise."""
    d, h, w = shape
    rng = np.random.default_rng(seed)
    z = np.arange(d, dtype=np.float32)[:, None, None]
    y = np.arange(h, dtype=np.float32)[None, :, None]
    x = np.arange(w, dtype=np.float32)[None, None, :]
    cy, cx = h / 2, w / 2
    r = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
    theta = np.arctan2(y - cy, x - cx)
    # Spiral sheets: intensity peaks where (r - 6*theta/2pi) hits multiples of the sheet pitch.
    pitch = 12.0
    phase = (r + pitch * theta / (2 * np.pi) + 2.0 * np.sin(z / 23.0)) / pitch
    sheet = np.exp(-((phase - np.round(phase)) ** 2) / 0.02)
    fibre = 0.15 * np.sin(z / 3.0 + x / 5.0)
    vol = 40.0 + 150.0 * sheet * (1.0 + fibre)
    vol = vol + rng.normal(0, 4.0, size=(d, h, w)).astype(np.float32)
    # Air around the scroll is masked to exactly 0, as in the community's masked volumes.
    vol = np.where(r < 0.42 * min(h, w), vol, 0.0)
    return np.clip(vol, 0, 255).astype(np.uint8)


def write(root, shape, chunk):
    data = ct_like(shape)
    for name, comp in STORES.items():
        zarr.open_array(f"{root}/{name}", mode="w", shape=shape, chunks=(chunk,) * 3, dtype="u1",
                        compressor=comp(), dimension_separator="/")[:] = data
    print(json.dumps({"bytes": int(data.nbytes)}))


def serve(root, plan_path):
    """One timed pass per request, so that bench.ts can alternate its passes with ours.

    Reads lines "STORE ROW" on stdin; for each, reads every region of that row of the plan once and
    prints {"seconds": ..., "checksum": ...} on one line. Ends at end of input.
    """
    with open(plan_path) as f:
        plan = json.load(f)
    rows = {row["name"]: row for row in plan["rows"]}
    arrays = {}
    for line in sys.stdin:
        store, name = line.split()
        if store not in arrays:
            arrays[store] = zarr.open_array(f"{root}/{store}", mode="r")
        a = arrays[store]
        dt = 0.0
        checksum = 0
        for off, shp in rows[name]["regions"]:
            sl = tuple(slice(o, o + s) for o, s in zip(off, shp))
            t0 = time.perf_counter()
            v = a[sl]
            dt += time.perf_counter() - t0
            # Outside the timing: a checksum so both readers are seen to return the same voxels.
            checksum = (checksum + int(v.sum(dtype=np.uint64))) % (1 << 32)
        print(json.dumps({"seconds": dt, "checksum": checksum}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "version":
        print(zarr.__version__)
    elif sys.argv[1] == "write":
        write(sys.argv[2], tuple(int(v) for v in sys.argv[3:6]), int(sys.argv[6]))
    elif sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]} (version, write, serve)")
