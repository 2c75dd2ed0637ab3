#!/usr/bin/env python3
"""PyTorch peer of `nx run core:bench`: one top-k MoE layer, forward + backward, at the same sizes.

The layer is the one @goe/core runs with `router: 'topk', cycles: 1, messages: false`:

    r = [t; a]                      [R, d + da]
    p = softmax(r W_r + b_r)        [R, M];  top k of p, gates renormalised over the k
    x = r W_p + b_p                 [R, de]
    h_e = (silu(x W1_e) * (x W3_e)) W2_e for the rows that chose expert e (SwiGLU, no biases)
    t' = t + (sum over slots of gate * h) W_o
    loss = mean(t'^2) + 0.01 balance + 0.001 entropy + 0.001 z-loss   (the layer's default regularisers)

Sparse dispatch is the usual PyTorch one: sort the (token, slot) pairs by expert, `index_select` each
expert's rows, run it, `index_add` the gated outputs back. Gradients of the loss with respect to every
parameter are taken with `torch.autograd.grad`.

Reads a JSON request on stdin, prints one JSON object on stdout:

  request:  {"threads": 1, "minTimeS": 2.0, "minReps": 5, "maxReps": 20,
             "workloads": [{"key": "...", "B": 4, "N": 256, "d": 64, "da": 16, "de": 64, "hidden": 128,
                            "experts": 8, "k": 2}, ...]}
  response: {"torch": "1.13.1", "threads": 1,
             "results": [{"key": "...", "wallMs": 12.3, "cpuMs": 12.1, "reps": 9}, ...]}

One warm-up step, then steps until `minTimeS` has passed (at least `minReps`, at most `maxReps`); the
medians of wall time and of this process's CPU time are reported.
"""
import json
import statistics
import sys
import time


def main() -> None:
    req = json.load(sys.stdin)
    import torch
    import torch.nn.functional as F

    threads = int(req.get("threads", 1))
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    torch.manual_seed(0)

    def glorot(*shape: int) -> "torch.Tensor":
        fan_in, fan_out = shape[-2], shape[-1]
        lim = (6.0 / (fan_in + fan_out)) ** 0.5
        return ((torch.rand(*shape) * 2 - 1) * lim).requires_grad_()

    def make(p: dict):
        B, N, d, da, de, hid, M, k = (p[x] for x in ("B", "N", "d", "da", "de", "hidden", "experts", "k"))
        R = B * N
        t = torch.randn(R, d)
        a = torch.randn(R, da)
        wr, br = glorot(d + da, M), torch.zeros(M, requires_grad=True)
        wp, bp = glorot(d + da, de), torch.zeros(de, requires_grad=True)
        # One tensor per expert and weight, as nn.ModuleList experts hold them (slicing one stacked
        # [M, …] weight would make every expert's backward write a full [M, …] gradient).
        w1 = [glorot(de, hid) for _ in range(M)]
        w3 = [glorot(de, hid) for _ in range(M)]
        w2 = [(torch.randn(hid, de) / (2 * hid) ** 0.5).requires_grad_() for _ in range(M)]
        wo = glorot(de, d)
        params = [wr, br, wp, bp, *w1, *w3, *w2, wo]
        rows_of_pair = torch.arange(R).repeat_interleave(k)  # [R k]: the token of each (token, slot) pair

        def step():
            r = torch.cat([t, a], 1)
            logits = torch.addmm(br, r, wr)  # [R, M]
            logp = F.log_softmax(logits, -1)
            prob = logp.exp()
            top_p, top_i = prob.topk(k, dim=-1)  # [R, k]
            gates = (top_p / top_p.sum(-1, keepdim=True)).reshape(-1)  # [R k]
            x = torch.addmm(bp, r, wp)  # [R, de]
            experts = top_i.reshape(-1)  # [R k]
            order = torch.argsort(experts)
            counts = torch.bincount(experts, minlength=M).tolist()
            mix = torch.zeros(R, de)
            start = 0
            for e, n in enumerate(counts):
                if n == 0:
                    continue
                pairs = order[start:start + n]
                start += n
                rows = rows_of_pair[pairs]
                xe = x.index_select(0, rows)  # [n, de]
                he = (F.silu(xe @ w1[e]) * (xe @ w3[e])) @ w2[e]  # [n, de]
                mix = mix.index_add(0, rows, he * gates[pairs].unsqueeze(1))
            out = t + mix @ wo  # [R, d]
            balance = ((prob.mean(0) - 1.0 / M) ** 2).sum()
            entropy = -(prob * logp).sum(-1).mean()
            zloss = (torch.logsumexp(logits, -1) ** 2).mean()
            loss = (out ** 2).mean() + 0.01 * balance + 0.001 * entropy + 0.001 * zloss
            return torch.autograd.grad(loss, params)

        return step

    min_time = float(req.get("minTimeS", 2.0))
    min_reps = int(req.get("minReps", 5))
    max_reps = int(req.get("maxReps", 20))
    results = []
    for wl in req["workloads"]:
        step = make(wl)
        step()
        wall, cpu = [], []
        start = time.perf_counter()
        while len(wall) < max_reps and (len(wall) < min_reps or time.perf_counter() - start < min_time):
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            cpu.append((time.process_time() - c0) * 1000.0)
            wall.append((time.perf_counter() - w0) * 1000.0)
        results.append({"key": wl["key"], "wallMs": statistics.median(wall), "cpuMs": statistics.median(cpu), "reps": len(wall)})

    json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
