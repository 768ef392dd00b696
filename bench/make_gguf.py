#!/usr/bin/env python3
"""Writes a llama-architecture GGUF with exactly a ttt-cl preset's shapes and
random weights, for timing llama.cpp on the same shapes (bench/llama_compare.sh).

The model is the preset's body without TTT's prime MLPs (llama.cpp has no
test-time step): L blocks of RMSNorm, attention with H heads (no GQA), RMSNorm
and a SwiGLU MLP of width I, a final RMSNorm, and a tied embedding (no
output.weight, so llama.cpp multiplies by token_embd for the logits). The
vocabulary is a placeholder SentencePiece table of V pieces (the 256 byte
pieces plus "t<i>"): llama-bench feeds random token ids and never detokenizes.

    python3 bench/make_gguf.py --out 125m-f32.gguf --dtype f32
    python3 bench/make_gguf.py --out 125m-f16.gguf --dtype f16

Needs the `gguf` and `numpy` PyPI packages (never ttt-cl's tools or library).
"""
import argparse
import sys

import numpy as np

# ttt-cl's presets (lib/format/config.cpp): layers, width, heads, MLP width, vocabulary.
PRESETS = {
    "125m": dict(L=12, D=768, H=12, I=1664, V=128256),
    "350m": dict(L=24, D=1024, H=16, I=2304, V=128256),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="GGUF file to write (must not exist)")
    ap.add_argument("--preset", default="125m", choices=sorted(PRESETS))
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16"], help="the matrices' type (norms stay f32)")
    ap.add_argument("--context", type=int, default=16384, help="llama.context_length")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    try:
        import gguf
    except ImportError:
        sys.exit("make_gguf.py: needs the gguf package (pip install gguf numpy)")
    import os
    if os.path.exists(a.out):
        sys.exit(f"make_gguf.py: {a.out} exists; not overwriting it")
    p = PRESETS[a.preset]
    L, D, H, I, V = p["L"], p["D"], p["H"], p["I"], p["V"]
    E = D // H
    rng = np.random.default_rng(a.seed)
    mat_t = np.float16 if a.dtype == "f16" else np.float32

    def mat(rows, cols):  # a (rows, cols) matrix: GGUF's ne = [cols, rows]
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(mat_t)

    def norm(n):
        return np.ones(n, dtype=np.float32)

    w = gguf.GGUFWriter(a.out, "llama")
    w.add_name(f"ttt-cl {a.preset} shapes, random weights ({a.dtype})")
    w.add_context_length(a.context)
    w.add_embedding_length(D)
    w.add_block_count(L)
    w.add_feed_forward_length(I)
    w.add_head_count(H)
    w.add_head_count_kv(H)
    w.add_rope_dimension_count(E)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(V)
    w.add_file_type(1 if a.dtype == "f16" else 0)  # LLAMA_FTYPE_MOSTLY_F16 / ALL_F32
    # Placeholder SentencePiece vocabulary: <unk> <s> </s>, the 256 byte pieces, then t<i>.
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{b:02X}>".encode() for b in range(256)]
    tokens += [f"t{i}".encode() for i in range(len(tokens), V)]
    types = [2, 3, 3] + [6] * 256 + [1] * (V - 259)  # unknown, control, byte, normal
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * V)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    w.add_tensor("token_embd.weight", mat(V, D))
    for i in range(L):
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", norm(D))
        w.add_tensor(b + "attn_q.weight", mat(D, D))
        w.add_tensor(b + "attn_k.weight", mat(D, D))
        w.add_tensor(b + "attn_v.weight", mat(D, D))
        w.add_tensor(b + "attn_output.weight", mat(D, D))
        w.add_tensor(b + "ffn_norm.weight", norm(D))
        w.add_tensor(b + "ffn_gate.weight", mat(I, D))
        w.add_tensor(b + "ffn_up.weight", mat(I, D))
        w.add_tensor(b + "ffn_down.weight", mat(D, I))
    w.add_tensor("output_norm.weight", norm(D))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    weights = (V * D + L * (4 * D * D + 3 * D * I)) * (2 if a.dtype == "f16" else 4)
    print(f"wrote {a.out}: {a.preset} shapes, {a.dtype}, {weights / 1e6:.0f} MB of matrices", file=sys.stderr)


if __name__ == "__main__":
    main()
