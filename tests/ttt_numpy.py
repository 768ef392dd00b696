"""A float64 numpy twin of docs/model-format.md's computation, test-time
training included: the forward of every block, and the backward through the
suffix blocks to the prime MLP weights for the inner SGD step. Independent of
the C++ code; checked against the golden cases (python3 ttt_numpy.py GOLDEN_DIR)."""
import json
import os
import struct
import sys

import numpy as np


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
        else:
            arr = np.frombuffer(raw, "<f2")
        out[name] = arr.reshape(e["shape"]).astype(np.float64)
    return out


def load(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    return cfg, read_safetensors(os.path.join(model_dir, "model.safetensors"))


# ---- layers: forward returns (y, cache); backward takes dy and the cache

def rms_fwd(x, g, eps):
    r = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return x * r * g, (x, r, g)


def rms_bwd(dy, cache):
    x, r, g = cache
    dxh = dy * g
    return r * (dxh - x * r * r * np.mean(dxh * x, axis=-1, keepdims=True))


def silu(a):
    return a / (1.0 + np.exp(-a))


def swiglu_fwd(x, w1, w3, w2):
    a, b = x @ w1, x @ w3
    h = silu(a) * b
    return h @ w2, (x, a, b, h)


def swiglu_bwd(dy, cache, w1, w3, w2):
    x, a, b, h = cache
    s = 1.0 / (1.0 + np.exp(-a))
    dh = dy @ w2.T
    da = dh * b * s * (1.0 + a * (1.0 - s))
    db = dh * silu(a)
    return da @ w1.T + db @ w3.T, (x.T @ da, x.T @ db, h.T @ dy)  # dx, (dw1, dw3, dw2)


def rope(x, pos, theta, sign=1.0):
    """Interleaved pairs (2j, 2j+1) rotate by pos * theta^(-2j/E); sign -1 is the transpose (for backward)."""
    E = x.shape[-1]
    ang = pos[:, None] * theta ** (-np.arange(0, E, 2) / E)[None, :]  # (n, E/2)
    c, s = np.cos(ang)[:, None, :], sign * np.sin(ang)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


class Model:
    def __init__(self, cfg, w):
        self.c, self.w = cfg, w
        self.L, self.D, self.H = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"]
        self.E = self.D // self.H
        self.S = cfg["suffix_len"] if cfg["prime"] else 0
        for key in ("pre_norm", "post_norm", "qk_norm"):
            assert cfg[key], f"the numpy twin implements {key} = true only"
        self.prime = {i: {k: w[f"blocks.{i}.prime.{k}"].copy() for k in ("w1", "w3", "w2")}
                      for i in range(self.L - self.S, self.L)}

    def attn_fwd(self, i, h, pos, kv):
        """h (n, D) at positions pos; kv: this block's (K, V, positions) of earlier chunks, held constant."""
        w, E, eps = self.w, self.E, self.c["rms_norm_eps"]
        p = f"blocks.{i}.attn."
        n = h.shape[0]
        q0, k0, v = (h @ w[p + "wq"]).reshape(n, self.H, E), (h @ w[p + "wk"]).reshape(n, self.H, E), \
            (h @ w[p + "wv"]).reshape(n, self.H, E)
        qn, cq = rms_fwd(q0, w[p + "q_norm"], eps)
        kn, ck = rms_fwd(k0, w[p + "k_norm"], eps)
        theta = self.c["rope_theta"]
        q, k = rope(qn, pos, theta), rope(kn, pos, theta)
        K, V, P = np.concatenate([kv[0], k]), np.concatenate([kv[1], v]), np.concatenate([kv[2], pos])
        W = self.c["sliding_window_size"]
        mask = (P[None, :] <= pos[:, None]) & (P[None, :] > pos[:, None] - W)  # (n, m)
        s = np.einsum("nhe,mhe->hnm", q, K) / np.sqrt(E)
        s = np.where(mask[None], s, -np.inf)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        o = np.einsum("hnm,mhe->nhe", a, V).reshape(n, self.D)
        new_kv = (k, v, pos)
        return o @ w[p + "wo"], new_kv, (h, q, K, V, a, cq, ck, pos, n)

    def attn_bwd(self, i, dy, cache):
        """d(output)/d(h) through this chunk's own q, k and v; earlier keys and values are constants."""
        w, E = self.w, self.E
        p = f"blocks.{i}.attn."
        h, q, K, V, a, cq, ck, pos, n = cache
        do = (dy @ w[p + "wo"].T).reshape(n, self.H, E)
        da = np.einsum("nhe,mhe->hnm", do, V)
        dV = np.einsum("hnm,nhe->mhe", a, do)
        ds = a * (da - (da * a).sum(-1, keepdims=True)) / np.sqrt(E)
        dq = np.einsum("hnm,mhe->nhe", ds, K)
        dK = np.einsum("hnm,nhe->mhe", ds, q)
        dk, dv = dK[-n:], dV[-n:]
        theta = self.c["rope_theta"]
        dq0 = rms_bwd(rope(dq, pos, theta, -1.0), cq)
        dk0 = rms_bwd(rope(dk, pos, theta, -1.0), ck)
        return dq0.reshape(n, -1) @ w[p + "wq"].T + dk0.reshape(n, -1) @ w[p + "wk"].T + dv.reshape(n, -1) @ w[p + "wv"].T

    def block_fwd(self, i, x, pos, kv):
        w, eps, b = self.w, self.c["rms_norm_eps"], f"blocks.{i}."
        h1, c1 = rms_fwd(x, w[b + "seq_norm"], eps)
        att, new_kv, ca = self.attn_fwd(i, h1, pos, kv)
        r1, c2 = rms_fwd(att, w[b + "seq_post_norm"], eps)
        x = x + r1
        cp = None
        if i in self.prime:
            pw = self.prime[i]
            h2, c3 = rms_fwd(x, w[b + "prime_norm"], eps)
            m, cm = swiglu_fwd(h2, pw["w1"], pw["w3"], pw["w2"])
            r2, c4 = rms_fwd(m, w[b + "prime_post_norm"], eps)
            x = x + r2
            cp = (c3, cm, c4)
        h3, c5 = rms_fwd(x, w[b + "ffn_norm"], eps)
        f, cf = swiglu_fwd(h3, w[b + "mlp.w1"], w[b + "mlp.w3"], w[b + "mlp.w2"])
        r3, c6 = rms_fwd(f, w[b + "ffn_post_norm"], eps)
        return x + r3, new_kv, (c1, ca, c2, cp, c5, cf, c6)

    def block_bwd(self, i, dx, cache, grads):
        w, b = self.w, f"blocks.{i}."
        c1, ca, c2, cp, c5, cf, c6 = cache
        dx = dx + rms_bwd(swiglu_bwd(rms_bwd(dx, c6), cf, w[b + "mlp.w1"], w[b + "mlp.w3"], w[b + "mlp.w2"])[0], c5)
        if cp is not None:
            pw = self.prime[i]
            c3, cm, c4 = cp
            dm, (dw1, dw3, dw2) = swiglu_bwd(rms_bwd(dx, c4), cm, pw["w1"], pw["w3"], pw["w2"])
            grads[i] = {"w1": dw1, "w3": dw3, "w2": dw2}
            dx = dx + rms_bwd(dm, c3)
        return dx + rms_bwd(self.attn_bwd(i, rms_bwd(dx, c2), ca), c1)

    def chunk(self, tokens, targets, pos, kvs, train):
        """Scores one mini-batch; with train, also the prime weights' gradient of its masked mean loss."""
        w, eps = self.w, self.c["rms_norm_eps"]
        x = w["wte"][tokens]
        caches = []
        for i in range(self.L):
            x, new_kv, cache = self.block_fwd(i, x, pos, kvs[i])
            kvs[i] = tuple(np.concatenate([old, new]) for old, new in zip(kvs[i], new_kv))
            caches.append(cache)
        hf, cfin = rms_fwd(x, w["ln_f"], eps)
        head = w["wte"] if self.c["tie_word_embeddings"] else w["lm_head"].T
        logits = hf @ head.T
        mx = logits.max(-1, keepdims=True)
        lse = mx[:, 0] + np.log(np.exp(logits - mx).sum(-1))
        nll = lse - logits[np.arange(len(targets)), targets]
        if not train:
            return nll, None
        keep = targets != self.c["bos_token_id"]
        count = max(int(keep.sum()), 1)
        dlogits = np.exp(logits - lse[:, None])
        dlogits[np.arange(len(targets)), targets] -= 1.0
        dlogits *= (keep / count)[:, None]
        dx = rms_bwd(dlogits @ head, cfin)
        grads = {}
        for i in range(self.L - 1, self.L - self.S - 1, -1):
            dx = self.block_bwd(i, dx, caches[i], grads)
        return nll, grads

    def evaluate(self, ids, ttt=True):
        """Per-token NLL of ids[1:], with the test-time SGD step after every full mini-batch."""
        ids = np.asarray(ids)
        B, T = self.c["mini_batch_size"], len(ids) - 1
        kvs = [(np.zeros((0, self.H, self.E)), np.zeros((0, self.H, self.E)), np.zeros(0))] * self.L
        out = []
        for s in range(0, T, B):
            e = min(s + B, T)
            train = ttt and e - s == B and self.S > 0
            nll, g = self.chunk(ids[s:e], ids[s + 1:e + 1], np.arange(s, e, dtype=np.float64), kvs, train)
            out.append(nll)
            if train:
                clip, lr = self.c["inner_clip_gradient"], self.c["inner_lr"]
                norm = np.sqrt(sum((v * v).sum() for gi in g.values() for v in gi.values()))
                scale = clip / norm if clip > 0 and norm >= clip else 1.0
                for i, gi in g.items():
                    for k, v in gi.items():
                        self.prime[i][k] = self.prime[i][k] - lr * scale * v
        return np.concatenate(out)


def main(golden):
    worst = 0.0
    for case in sorted(os.listdir(golden)):
        d = os.path.join(golden, case)
        if not os.path.isfile(os.path.join(d, "config.json")):
            continue
        cfg, w = load(d)
        ids = [int(t) for t in open(os.path.join(d, "tokens.txt")).read().split()]
        for ttt, ref in ((False, "nll_no_ttt.txt"), (True, "nll_ttt.txt")):
            want = np.array([float(v) for v in open(os.path.join(d, ref)).read().split()])
            got = Model(cfg, w).evaluate(ids, ttt)
            diff = float(np.abs(got - want).max())
            worst = max(worst, diff)
            print(f"{case:14s} ttt={int(ttt)}  max |numpy - golden| = {diff:.3g}")
    return 0 if worst < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
