#!/usr/bin/env python3
"""PyTorch (float32, eager; CPU by default, --device cuda on an NVIDIA GPU) twin of docs/model-format.md's evaluation with
test-time training: per-token NLL of a token file, the prime MLPs of the suffix
blocks trained by one clipped SGD step after every full mini-batch. Written from
the format document (tests/ttt_numpy.py is the float64 numpy twin it follows);
autograd gives the inner gradient, earlier chunks' keys/values are constants.

An optional benchmark tool (Debian: python3-torch), not a dependency of ttt-cl.
  pytorch_reference.py -m MODEL_DIR --tokens FILE [--threads N] [--device cpu|cuda] [--no-ttt] [--out NLL_FILE]
prints one JSON line: tokens, seconds, tokens_per_s, mean_nll, torch version, threads, device.
On CUDA, TF32 is off (float32 products, like ttt-cl), a short untimed warm-up on a copy of the
weights comes first (CUDA context, cuBLAS handles), and the clock stops after a synchronize."""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header, out = json.loads(data[8:8 + n]), {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        raw = data[8 + n + a:8 + n + b]
        if e["dtype"] == "F32":
            arr = np.frombuffer(raw, "<f4")
        elif e["dtype"] == "BF16":
            arr = (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4")
        elif e["dtype"] == "F16":
            arr = np.frombuffer(raw, "<f2").astype("<f4")
        else:
            raise ValueError(f"{name}: dtype {e['dtype']}")
        out[name] = torch.from_numpy(arr.reshape(e["shape"]).astype(np.float32))
    return out


def rms(x, g, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * g


def swiglu(x, w1, w3, w2):
    return (F.silu(x @ w1) * (x @ w3)) @ w2


def rope_tables(pos, E, theta):
    """cos/sin (n, 1, E/2) of pos * theta^(-2j/E), computed in float64 like the engine."""
    ang = pos[:, None].double() * theta ** (-torch.arange(0, E, 2, dtype=torch.float64, device=pos.device) / E)[None, :]
    return torch.cos(ang).float()[:, None, :], torch.sin(ang).float()[:, None, :]


def rope(x, c, s):
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


class Model:
    def __init__(self, cfg, w):
        self.c, self.w = cfg, w
        self.L, self.D, self.H = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"]
        self.E = self.D // self.H
        self.S = cfg["suffix_len"] if cfg.get("prime") else 0
        self.W = cfg["sliding_window_size"]
        for key in ("pre_norm", "post_norm", "qk_norm"):
            if not cfg.get(key, True):
                raise SystemExit(f"pytorch_reference.py implements {key} = true only")
        # [Wq | Wk | Wv] and [W1 | W3] fused, as the engine does.
        self.wqkv = [torch.cat([w[f"blocks.{i}.attn.w{x}"] for x in "qkv"], 1) for i in range(self.L)]
        self.w13 = [torch.cat([w[f"blocks.{i}.mlp.w1"], w[f"blocks.{i}.mlp.w3"]], 1) for i in range(self.L)]
        self.prime = {i: [w[f"blocks.{i}.prime.w1"].clone(), w[f"blocks.{i}.prime.w3"].clone(),
                          w[f"blocks.{i}.prime.w2"].clone()] for i in range(self.L - self.S, self.L)}
        self.head = w["wte"] if cfg["tie_word_embeddings"] else w["lm_head"].t()

    def attention(self, i, h, cs, kv, pos):
        w, H, E, n, eps = self.w, self.H, self.E, h.shape[0], self.c["rms_norm_eps"]
        p = f"blocks.{i}.attn."
        qkv = h @ self.wqkv[i]
        q = rope(rms(qkv[:, :self.D].view(n, H, E), w[p + "q_norm"], eps), *cs)
        k = rope(rms(qkv[:, self.D:2 * self.D].view(n, H, E), w[p + "k_norm"], eps), *cs)
        v = qkv[:, 2 * self.D:].view(n, H, E)
        K, V, P = torch.cat([kv[0], k]), torch.cat([kv[1], v]), torch.cat([kv[2], pos])
        mask = (P[None, :] <= pos[:, None]) & (P[None, :] > pos[:, None] - self.W)
        # Plain masked softmax attention (torch 1.13, Debian 12's, has no scaled_dot_product_attention).
        s = torch.einsum("nhe,mhe->hnm", q, K) / math.sqrt(E)
        o = torch.softmax(s.masked_fill(~mask[None], float("-inf")), -1) @ V.transpose(0, 1)
        # Keys and values enter the window as constants for later chunks; keep the last W - 1.
        keep = self.W - 1
        new_kv = (K[-keep:].detach(), V[-keep:].detach(), P[-keep:])
        return o.transpose(0, 1).reshape(n, self.D) @ w[p + "wo"], new_kv

    def chunk(self, ids, targets, pos, kvs, train):
        w, eps, I = self.w, self.c["rms_norm_eps"], self.c["intermediate_size"]
        cs = rope_tables(pos, self.E, self.c["rope_theta"])
        prime = {i: [t.requires_grad_(train) for t in ws] for i, ws in self.prime.items()}
        with torch.set_grad_enabled(train):
            x = w["wte"][ids]
            for i in range(self.L):
                b = f"blocks.{i}."
                a, kvs[i] = self.attention(i, rms(x, w[b + "seq_norm"], eps), cs, kvs[i], pos)
                x = x + rms(a, w[b + "seq_post_norm"], eps)
                if i in prime:
                    m = swiglu(rms(x, w[b + "prime_norm"], eps), *prime[i])
                    x = x + rms(m, w[b + "prime_post_norm"], eps)
                h = rms(x, w[b + "ffn_norm"], eps) @ self.w13[i]
                m = (F.silu(h[:, :I]) * h[:, I:]) @ w[b + "mlp.w2"]
                x = x + rms(m, w[b + "ffn_post_norm"], eps)
            logits = rms(x, w["ln_f"], eps) @ self.head.t()
            nll = F.cross_entropy(logits, targets, reduction="none")
            if not train:
                return nll.detach()
            keep = (targets != self.c["bos_token_id"]).float()
            loss = (nll * keep).sum() / max(float(keep.sum()), 1.0)
            params = [t for ws in prime.values() for t in ws]
            grads = torch.autograd.grad(loss, params)
        clip, lr = self.c["inner_clip_gradient"], self.c["inner_lr"]
        with torch.no_grad():
            norm = math.sqrt(sum(float((g.double() * g.double()).sum()) for g in grads))
            if not math.isfinite(norm):
                raise SystemExit("non-finite inner gradient")
            scale = clip / norm if clip > 0 and norm >= clip else 1.0
            for t, g in zip(params, grads):
                t.sub_(lr * scale * g)
        for ws in self.prime.values():
            for t in ws:
                t.requires_grad_(False)
        return nll.detach()

    def evaluate(self, ids, ttt=True):
        B, T = self.c["mini_batch_size"], len(ids) - 1
        dev = self.head.device
        empty = torch.zeros(0, self.H, self.E, device=dev)
        kvs = [(empty, empty, torch.zeros(0, dtype=torch.int64, device=dev))] * self.L
        out = []
        for s in range(0, T, B):
            e = min(s + B, T)
            train = ttt and e - s == B and self.S > 0
            out.append(self.chunk(ids[s:e], ids[s + 1:e + 1], torch.arange(s, e, device=dev), kvs, train))
        return torch.cat(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", required=True, help="model directory (config.json, model.safetensors)")
    ap.add_argument("--tokens", required=True, help="token ids, whitespace-separated")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
    ap.add_argument("--no-ttt", action="store_true", help="no test-time training")
    ap.add_argument("--out", help="write the per-token NLL here, one per line")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    weights = {k: v.to(dev) for k, v in read_safetensors(os.path.join(a.model, "model.safetensors")).items()}
    with open(a.tokens) as f:
        ids = torch.tensor([int(t) for t in f.read().split()], dtype=torch.int64, device=dev)
    if cuda:  # warm-up on its own model: the timed one starts from the file's prime weights
        Model(cfg, weights).evaluate(ids[:cfg["mini_batch_size"] + 2], not a.no_ttt)
        torch.cuda.synchronize()
    model = Model(cfg, weights)
    t0 = time.perf_counter()
    nll = model.evaluate(ids, not a.no_ttt)
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    if a.out:
        np.savetxt(a.out, nll.double().cpu().numpy(), fmt="%.9g")
    print(json.dumps({"tokens": len(ids) - 1, "seconds": dt, "tokens_per_s": (len(ids) - 1) / dt,
                      "mean_nll": float(nll.double().mean()), "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "device": str(dev), "ttt": not a.no_ttt}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
