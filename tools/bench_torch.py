#!/usr/bin/env python3
"""PyTorch peer for `nx run tf:bench`: times the same workloads, on the same sizes, in PyTorch.

Reads a JSON request on stdin and prints one JSON object on stdout:

  request:  {"device": "cpu" | "cuda", "threads": 1, "minTimeS": 1.0, "maxReps": 10,
             "workloads": [{"key": "...", "kind": "matmul", "params": {...}}, ...]}
  response: {"torch": "1.13.0", "device": "...", "deviceName": "...", "threads": 1,
             "results": [{"key": "...", "ms": 12.3, "minMs": 12.0, "reps": 5}, ...]}

Each workload runs once to warm up, then repeats until `minTimeS` has passed (at least one timed run,
at most `maxReps`); `ms` is the median. CUDA work is synchronised before the clock is read. Forward +
backward workloads take the gradient of sum(y * r) for a fixed random r, as the TypeScript side does.
"""
import json
import math
import statistics
import sys
import time


def main() -> None:
    req = json.load(sys.stdin)
    import torch
    import torch.nn.functional as F

    device = req.get("device", "cpu")
    threads = int(req.get("threads", 1))
    if device == "cpu":
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # already set in this process
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_torch: CUDA requested but torch.cuda.is_available() is False")
    dev = torch.device(device)
    torch.manual_seed(0)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def randn(*shape: int, grad: bool = False) -> "torch.Tensor":
        return torch.randn(*shape, device=dev, requires_grad=grad)

    def fwd_bwd(forward, inputs):
        """A step that runs forward, then the gradient of sum(y * r) wrt `inputs`."""
        r = None

        def step():
            nonlocal r
            y = forward()
            if r is None:
                r = torch.randn_like(y)
            grads = torch.autograd.grad((y * r).sum(), inputs)
            return grads

        return step

    def make(kind: str, p: dict):
        if kind == "matmul":
            n = p["n"]
            a, b = randn(n, n), randn(n, n)
            ta, tb = p.get("transposeA", False), p.get("transposeB", False)
            return lambda: torch.matmul(a.t() if ta else a, b.t() if tb else b)
        if kind == "bmm":
            a, b = randn(p["batch"], p["n"], p["n"]), randn(p["batch"], p["n"], p["n"])
            return lambda: torch.bmm(a, b)
        if kind == "conv3d":
            bsz, d, h, w, cin = p["x"]
            k, s, cout = p["k"], p["stride"], p["cout"]
            # NCDHW: PyTorch's layout; the arithmetic is the same as NDHWC's.
            x = randn(bsz, cin, d, h, w, grad=True)
            wt = randn(cout, cin, k, k, k, grad=True)
            pad = (k - 1) // 2 if p["padding"] == "same" else 0
            return fwd_bwd(lambda: F.conv3d(x, wt, stride=s, padding=pad), (x, wt))
        if kind == "patchify":
            bsz, d, h, w, c = p["x"]
            q = p["p"]
            x = randn(bsz, d, h, w, c, grad=True)

            def patchify():
                t = x.reshape(bsz, d // q, q, h // q, q, w // q, q, c)
                t = t.permute(0, 1, 3, 5, 2, 4, 6, 7)
                return t.reshape(bsz, -1, q * q * q * c)

            return fwd_bwd(patchify, (x,))
        if kind == "block":
            return make_block(p)
        raise SystemExit(f"bench_torch: unknown workload kind {kind!r}")

    def make_block(p: dict):
        bsz, n, d = p["x"]
        heads = p["heads"]
        dh = d // heads
        hidden = p["mlp"] * d

        def linear(i: int, o: int):
            return (randn(i, o, grad=True), torch.zeros(o, device=dev, requires_grad=True))

        ln1 = (torch.ones(d, device=dev, requires_grad=True), torch.zeros(d, device=dev, requires_grad=True))
        ln2 = (torch.ones(d, device=dev, requires_grad=True), torch.zeros(d, device=dev, requires_grad=True))
        wq, wk, wv, wo = linear(d, d), linear(d, d), linear(d, d), linear(d, d)
        w1, w2 = linear(d, hidden), linear(hidden, d)
        x = randn(bsz, n, d, grad=True)
        params = [x, *ln1, *ln2, *wq, *wk, *wv, *wo, *w1, *w2]

        def lin(t, wb):
            return torch.addmm(wb[1], t, wb[0])

        def heads_view(t):
            return t.reshape(bsz, n, heads, dh).permute(0, 2, 1, 3)

        def forward():
            # Pre-LN transformer block, the same ops as the TypeScript side (attention with explicit
            # softmax; GELU tanh approximation).
            x2 = x.reshape(bsz * n, d)
            h = F.layer_norm(x2, (d,), ln1[0], ln1[1], 1e-5)
            q, k, v = heads_view(lin(h, wq)), heads_view(lin(h, wk)), heads_view(lin(h, wv))
            s = torch.matmul(q * (1.0 / math.sqrt(dh)), k.transpose(-1, -2))
            a = torch.matmul(torch.softmax(s, dim=-1), v)
            a = a.permute(0, 2, 1, 3).reshape(bsz * n, d)
            x3 = x2 + lin(a, wo)
            h2 = F.layer_norm(x3, (d,), ln2[0], ln2[1], 1e-5)
            m = lin(F.gelu(lin(h2, w1), approximate="tanh"), w2)
            return (x3 + m).reshape(bsz, n, d)

        return fwd_bwd(forward, params)

    min_time = float(req.get("minTimeS", 1.0))
    max_reps = int(req.get("maxReps", 10))
    results = []
    for wl in req["workloads"]:
        step = make(wl["kind"], wl["params"])
        step()
        sync()
        times = []
        start = time.perf_counter()
        while len(times) < max_reps and (not times or time.perf_counter() - start < min_time):
            t0 = time.perf_counter()
            step()
            sync()
            times.append((time.perf_counter() - t0) * 1000.0)
        results.append({"key": wl["key"], "ms": statistics.median(times), "minMs": min(times), "reps": len(times)})

    out = {
        "torch": torch.__version__,
        "device": device,
        "deviceName": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "threads": torch.get_num_threads() if device == "cpu" else None,
        "results": results,
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
