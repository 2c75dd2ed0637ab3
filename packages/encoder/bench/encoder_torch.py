#!/usr/bin/env python3
"""PyTorch peer of `nx run encoder:bench`: the @goe/encoder at the same sizes, forward + backward.

The encoder is the one @goe/encoder builds (GoE draft section 3.1.2), written here with the same
parameter layout (a Linear's weight is [in, out], y = x W + b):

    x = T                                                        [R, d], R = B N
    per block (pre-LN, draft eq. 5):
      q, k, v = split(LN1(x) W_qkv + b_qkv, 3)                   [R, d] each
      x = x + merge(softmax(q_h k_h^T / sqrt(dh)) v_h) W_o + b_o (per sample and head, draft eq. 6)
      x = x + gelu_tanh(LN2(x) W_1 + b_1) W_2 + b_2
    T' = LN_final(x)
    a' = a + [a; T'] W_aux + b_aux                               (auxRefine 'linear', draft eq. 7)
    a' = a + MHA(LN(a) W_q, T' W_k, T' W_v) W_o                  (auxRefine 'cross')
    loss = sum(T' * r1) + sum(a' * r2)

Gradients of the loss with respect to every parameter are taken with `torch.autograd.grad`.

Reads a JSON request on stdin, prints one JSON object on stdout.

  check:  {"mode": "check", "workloads": [{"key", "B", "N", "d", "da", "depth", "heads", "hidden",
           "auxRefine", "auxDim", "auxHeads", "params": {name: [flat values]}, "tokens", "aux", "r1",
           "r2"}]}
          -> {"torch", "results": [{"key", "tokens", "aux", "grads": {name: [flat values]}}]}
          (our weights and inputs in, this side's outputs and gradients out, for the caller to compare)
  time:   {"mode": "time", "threads": 1, "minTimeS": 2.0, "minReps": 5, "maxReps": 20,
           "workloads": [{"key", "B", "N", "d", ...} without the tensors]}
          -> {"torch", "threads", "results": [{"key", "wallMs", "cpuMs", "reps"}]}

Timing: one warm-up step, then steps until `minTimeS` has passed (at least `minReps`, at most
`maxReps`); the medians of wall time and of this process's CPU time are reported.
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

    threads = int(req.get("threads", 1))
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    torch.manual_seed(0)

    def shapes(w: dict) -> dict:
        """Every parameter's shape, by the dotted names @goe/encoder's variables() uses."""
        d, da, hid, depth = w["d"], w["da"], w["hidden"], w["depth"]
        out = {}
        for i in range(depth):
            p = f"blocks.{i}."
            out.update({
                p + "norm1.gain": [d], p + "norm1.bias": [d],
                p + "attn.qkv.w": [d, 3 * d], p + "attn.qkv.b": [3 * d],
                p + "attn.out.w": [d, d], p + "attn.out.b": [d],
                p + "norm2.gain": [d], p + "norm2.bias": [d],
                p + "fc1.w": [d, hid], p + "fc1.b": [hid],
                p + "fc2.w": [hid, d], p + "fc2.b": [d],
            })
        out.update({"finalNorm.gain": [d], "finalNorm.bias": [d]})
        if da > 0 and w["auxRefine"] == "linear":
            out.update({"auxProj.w": [da + d, da], "auxProj.b": [da]})
        if da > 0 and w["auxRefine"] == "cross":
            D = w["auxDim"]
            out.update({
                "auxNorm.gain": [da], "auxNorm.bias": [da],
                "auxAttn.q.w": [da, D], "auxAttn.q.b": [D],
                "auxAttn.kv.w": [d, 2 * D], "auxAttn.kv.b": [2 * D],
                "auxAttn.out.w": [D, da], "auxAttn.out.b": [da],
            })
        return out

    def make(w: dict, given: bool):
        B, N, d, da, heads = w["B"], w["N"], w["d"], w["da"], w["heads"]
        R = B * N
        P = {}
        for name, shape in shapes(w).items():
            if given:
                t = torch.tensor(w["params"][name], dtype=torch.float32).reshape(shape)
            elif name.endswith("gain"):
                t = torch.ones(shape)
            elif len(shape) == 1:
                t = torch.zeros(shape)
            else:
                t = torch.randn(shape) / math.sqrt(shape[0])
            P[name] = t.requires_grad_()
        data = lambda k, n, c: (torch.tensor(w[k], dtype=torch.float32) if given else torch.randn(n * c)).reshape(n, c)
        tokens, aux, r1, r2 = data("tokens", R, d), data("aux", R, da), data("r1", R, d), data("r2", R, da)

        def lin(x, name):
            return torch.addmm(P[name + ".b"], x, P[name + ".w"])

        def ln(x, name):
            return F.layer_norm(x, (x.shape[-1],), P[name + ".gain"], P[name + ".bias"], 1e-5)

        def attend(q, k, v, h):
            # [R, D] rows -> [B, h, N, D/h]; softmax(q k^T / sqrt(dh)) v; back to [R, D].
            D = q.shape[1]
            dh = D // h
            view = lambda t: t.reshape(B, N, h, dh).permute(0, 2, 1, 3)
            s = torch.matmul(view(q) * (1.0 / math.sqrt(dh)), view(k).transpose(-1, -2))
            o = torch.matmul(torch.softmax(s, dim=-1), view(v))
            return o.permute(0, 2, 1, 3).reshape(R, D)

        def forward():
            x = tokens
            for i in range(w["depth"]):
                p = f"blocks.{i}."
                q, k, v = lin(ln(x, p + "norm1"), p + "attn.qkv").chunk(3, dim=1)
                x = x + lin(attend(q, k, v, heads), p + "attn.out")
                x = x + lin(F.gelu(lin(ln(x, p + "norm2"), p + "fc1"), approximate="tanh"), p + "fc2")
            x = ln(x, "finalNorm")
            a = aux
            if "auxProj.w" in P:
                a = a + lin(torch.cat([a, x], 1), "auxProj")
            if "auxAttn.q.w" in P:
                q = lin(ln(a, "auxNorm"), "auxAttn.q")
                k, v = lin(x, "auxAttn.kv").chunk(2, dim=1)
                a = a + lin(attend(q, k, v, w["auxHeads"]), "auxAttn.out")
            return x, a

        names = list(P)

        def step():
            x, a = forward()
            loss = (x * r1).sum() + (a * r2).sum()
            return x, a, torch.autograd.grad(loss, [P[n] for n in names])

        return step, names

    results = []
    if req["mode"] == "check":
        for wl in req["workloads"]:
            step, names = make(wl, True)
            x, a, grads = step()
            results.append({
                "key": wl["key"],
                "tokens": x.detach().reshape(-1).tolist(),
                "aux": a.detach().reshape(-1).tolist(),
                "grads": {n: g.reshape(-1).tolist() for n, g in zip(names, grads)},
            })
    else:
        min_time = float(req.get("minTimeS", 2.0))
        min_reps = int(req.get("minReps", 5))
        max_reps = int(req.get("maxReps", 20))
        for wl in req["workloads"]:
            step, _ = make(wl, False)
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
