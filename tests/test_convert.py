#!/usr/bin/env python3
"""tools/convert_official.py against checkpoints written here, independently,
in the official orbax layout (OCDBT per-process store merged into the item's
root, zarr v2 + zstd, _METADATA with the None leaves, _sharding, the SWA cache
state): every tensor, the round trip, ttt-perplexity's NLL against the numpy
twin (tests/ttt_numpy.py) with and without test-time training, and the errors.
Exits 77 (skip) where numpy or tensorstore is missing.

usage: test_convert.py BIN_DIR REPO_ROOT"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import tensorstore as ts
    import yaml  # noqa: F401  (the converter's --config needs it)
except ImportError as e:
    print(f"skipped: {e} (tools/setup.sh test installs numpy, tensorstore and PyYAML in build/venv)")
    sys.exit(77)

BIN, ROOT = sys.argv[1], sys.argv[2]
CONVERT = os.path.join(ROOT, "tools", "convert_official.py")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ttt_numpy  # noqa: E402

results = {"passed": 0, "failed": 0}
CFG = dict(vocab_size=61, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=40,
           rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=True, qk_norm=True, pre_norm=True,
           post_norm=True, sliding_window_size=24, mini_batch_size=16, suffix_len=2, prime=True, inner_lr=1.0,
           inner_clip_gradient=1.0, bos_token_id=0, eos_token_id=1)
H = "language_model.model.h."


def check(name, cond, detail=""):
    results["passed" if cond else "failed"] += 1
    print(f"ok    {name}" if cond else f"FAIL  {name}\n      {detail}")


def run(*args):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


def convert(*args, env=None):
    p = subprocess.run([sys.executable, CONVERT, *args], capture_output=True, text=True, timeout=300, env=env)
    return p.returncode, p.stdout, p.stderr


def expect_error(name, args, *fragments, env=None):
    rc, out, err = convert(*args, env=env)
    lines = [l for l in err.splitlines() if l.strip() and "warning:" not in l]
    ok = rc != 0 and len(lines) == 1 and lines[0].startswith("convert_official: error: ")
    ok = ok and all(f in lines[0] for f in fragments)
    check(name, ok, f"exit {rc}, stderr {err.strip()[:500]!r}, wanted {fragments}")


# ---------------------------------------------------------------- the official layout, written from its facts

def official_arrays(cfg, rng):
    """Random values in every array, norms included (around 1 so that the model stays well scaled)."""
    V, D, L, I, S = (cfg[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "suffix_len"))
    E = D // cfg["num_attention_heads"]

    def lin(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[-2])).astype(np.float32)

    def norm(*shape):
        return (1.0 + 0.3 * rng.standard_normal(shape)).astype(np.float32)

    a = {"language_model.model.wte.weight": rng.standard_normal((V, D)).astype(np.float32),
         "language_model.model.ln_f.weight": norm(D)}
    for w in ("wq", "wk", "wv", "wo"):
        a[f"{H}blocks.seq_modeling_block.{w}.weight"] = lin(L, D, D)
    for w in ("q_norm", "k_norm"):
        a[f"{H}blocks.seq_modeling_block.{w}.weight"] = norm(L, E)
    for pre, n in (("blocks.feed_forward", L), ("prime_storage.feed_forward_prime", S)):
        a[f"{H}{pre}.w1.weight"], a[f"{H}{pre}.w3.weight"], a[f"{H}{pre}.w2.weight"] = lin(n, D, I), lin(n, D, I), lin(n, I, D)
    for w in ("seq_norm", "seq_post_norm", "ffn_norm", "ffn_post_norm"):
        a[f"{H}blocks.{w}.weight"] = norm(L, D)
    for w in ("ffn_prime_norm", "ffn_prime_post_norm"):
        a[f"{H}prime_storage.{w}.weight"] = norm(S, D)
    return a


def write_checkpoint(root, step, arrays, cfg, drop=()):
    """One step folder as the official Checkpointer leaves it: model_weights written by a process into
    ocdbt.process_0 and merged into model_weights' own OCDBT root, arrays split in two chunks along their
    first axis (as a sharded save writes them), plus the SWA key/value cache's zero state and the None leaves."""
    L, W, D = cfg["num_hidden_layers"], cfg["sliding_window_size"], cfg["hidden_size"]
    mw = os.path.join(root, str(step), "model_weights")
    os.makedirs(os.path.join(mw, "array_metadatas"))
    ctx = ts.Context({"cache_pool#ocdbt": {"total_bytes_limit": 10 ** 8}})
    opts = {"config": {"max_inline_value_bytes": 1024, "max_decoded_node_bytes": 10 ** 8, "manifest_kind": "single"},
            "assume_config": True, "cache_pool": "cache_pool#ocdbt"}
    child = {"driver": "ocdbt", "base": {"driver": "file", "path": os.path.join(mw, "ocdbt.process_0")}, **opts}
    cache = {f"{H}blocks.seq_modeling_block.kv_cache_index.init.{k}": np.zeros((L, W, D), np.float32) for k in "01"}
    stored = {n: a for n, a in {**arrays, **cache}.items() if n not in drop}
    for name, a in stored.items():
        chunks = [max(1, (a.shape[0] + 1) // 2), *a.shape[1:]]
        t = ts.open({"driver": "zarr", "kvstore": {**child, "path": name}, "create": True,
                     "store_data_equal_to_fill_value": True,
                     "metadata": {"shape": list(a.shape), "chunks": chunks, "fill_value": None, "order": "C",
                                  "dtype": "bfloat16" if "kv_cache" in name else "<f4",
                                  "compressor": {"id": "zstd", "level": 1}, "dimension_separator": "."}},
                    context=ctx).result()
        t.write(a.astype(ts.bfloat16.numpy_dtype) if "kv_cache" in name else a).result()
    parent = ts.KvStore.open({"driver": "ocdbt", "base": {"driver": "file", "path": mw}, **opts}, context=ctx).result()
    src = ts.KvStore.open(child, context=ctx).result()
    txn = ts.Transaction(atomic=True)
    src.experimental_copy_range_to(parent.with_transaction(txn)).result()
    txn.commit_sync()

    tree = {}

    def leaf(path, shape=None):
        keys = path.split(".")
        tree[repr(tuple(keys))] = {
            "key_metadata": [{"key": k, "key_type": 1 if k.isdigit() else 2} for k in keys],
            "value_metadata": ({"value_type": "jax.Array", "skip_deserialize": False, "write_shape": list(shape)}
                               if shape is not None else {"value_type": "None", "skip_deserialize": True})}

    leaf("step_index.init")
    for name, a in {**arrays, **cache}.items():
        leaf(name, a.shape)
        if "norm" in name or name.endswith("ln_f.weight"):
            leaf(name[:-len("weight")] + "bias")
    for name in ("blocks.seq_modeling_block.chunk_index.init", "blocks.ffn_prime_norm", "blocks.ffn_prime_post_norm",
                 "blocks.feed_forward_prime"):
        leaf(H + name)
    if "language_model.lm_head.weight" not in arrays:
        leaf("language_model.lm_head")
    with open(os.path.join(mw, "_METADATA"), "w") as f:
        json.dump({"tree_metadata": tree, "use_zarr3": False, "store_array_data_equal_to_fill_value": True,
                   "custom_metadata": None}, f)
    mesh = {"sharding_type": "NamedSharding", "shape": [1, 1], "axis_names": ["data", "state"],
            "partition_spec": [None, "state"], "device_mesh": {"mesh": [[{"id": 0}]]}}
    with open(os.path.join(mw, "_sharding"), "w") as f:
        json.dump({base64.b64encode(n.encode()).decode(): json.dumps(mesh) for n in stored}, f)
    with open(os.path.join(mw, "array_metadatas", "process_0"), "w") as f:
        json.dump({"array_metadatas": [{"array_metadata": {"param_name": n, "write_shape": list(a.shape),
                                                           "chunk_shape": list(a.shape), "ext_metadata": None}}
                                       for n, a in stored.items()]}, f)
    os.makedirs(os.path.join(root, str(step), "train_ds_iter"))
    with open(os.path.join(root, str(step), "train_ds_iter", "global_batch_progress.json"), "w") as f:
        f.write('{"last_seen_indices": {"0": 41}}')
    with open(os.path.join(root, str(step), "_CHECKPOINT_METADATA"), "w") as f:
        json.dump({"item_handlers": {"model_weights": "orbax.checkpoint.StandardCheckpointHandler",
                                     "train_ds_iter": "ttt.infra.checkpoint.CustomPyGrainCheckpointHandler"},
                   "metrics": {}, "performance_metrics": {}, "init_timestamp_nsecs": 1, "commit_timestamp_nsecs": 2,
                   "custom_metadata": {}}, f)


def write_run_config(path, cfg, **model_overrides):
    """Hydra's composed config.yaml, with the repo's spelling of eps (1e-6, a string to a YAML 1.1 reader)."""
    m = {k: cfg[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                             "intermediate_size", "rope_theta", "tie_word_embeddings", "qk_norm", "pre_norm",
                             "post_norm", "sliding_window_size", "mini_batch_size", "suffix_len", "prime",
                             "bos_token_id", "eos_token_id")}
    m.update(seq_modeling_block="SWA", output_size=32000, compute_dtype="bf16", **model_overrides)
    lines = ["training:", "  optimizer_inner:", "    optimizer_type: sgd", f"    lr: {int(cfg['inner_lr'])}",
             f"    clip_gradient: {cfg['inner_clip_gradient']}", "model:", "  rms_norm_eps: 1e-6"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in m.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def v1_expected(arrays, cfg):
    L, S = cfg["num_hidden_layers"], cfg["suffix_len"]
    out = {"wte": arrays["language_model.model.wte.weight"], "ln_f": arrays["language_model.model.ln_f.weight"]}
    names = {"attn.wq": "blocks.seq_modeling_block.wq", "attn.wk": "blocks.seq_modeling_block.wk",
             "attn.wv": "blocks.seq_modeling_block.wv", "attn.wo": "blocks.seq_modeling_block.wo",
             "attn.q_norm": "blocks.seq_modeling_block.q_norm", "attn.k_norm": "blocks.seq_modeling_block.k_norm",
             "mlp.w1": "blocks.feed_forward.w1", "mlp.w2": "blocks.feed_forward.w2", "mlp.w3": "blocks.feed_forward.w3",
             "seq_norm": "blocks.seq_norm", "seq_post_norm": "blocks.seq_post_norm", "ffn_norm": "blocks.ffn_norm",
             "ffn_post_norm": "blocks.ffn_post_norm"}
    for v1, off in names.items():
        for i in range(L):
            out[f"blocks.{i}.{v1}"] = arrays[f"{H}{off}.weight"][i]
    for v1, off in {"prime_norm": "ffn_prime_norm", "prime_post_norm": "ffn_prime_post_norm",
                    "prime.w1": "feed_forward_prime.w1", "prime.w2": "feed_forward_prime.w2",
                    "prime.w3": "feed_forward_prime.w3"}.items():
        for j in range(S):
            out[f"blocks.{L - S + j}.{v1}"] = arrays[f"{H}prime_storage.{off}.weight"][j]
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="ttt_convert_")
    try:
        body(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


def body(tmp):
    rng = np.random.default_rng(9)
    arrays = official_arrays(CFG, rng)
    ckpt = os.path.join(tmp, "ckpt")
    write_checkpoint(ckpt, 100, official_arrays(CFG, rng), CFG)  # an older step: must not be picked
    write_checkpoint(ckpt, 2500, arrays, CFG)
    run_cfg = os.path.join(tmp, "config.yaml")
    write_run_config(run_cfg, CFG)

    # Convert the manager root: the latest step, every tensor bit for bit, the configuration.
    model = os.path.join(tmp, "model")
    rc, out, err = convert(ckpt, "--out", model, "--config", run_cfg)
    check("convert the manager root", rc == 0 and "step 2500" in out and "tokenizer" in err, out + err)
    st = ttt_numpy.read_safetensors(os.path.join(model, "model.safetensors"))
    want = v1_expected(arrays, CFG)
    worst = max(float(np.abs(st[n] - want[n]).max()) for n in want)
    check(f"every tensor ({len(want)}) converted; max |diff| {worst:g}", set(st) == set(want) and worst == 0.0,
          f"extra {set(st) - set(want)}, missing {set(want) - set(st)}")
    with open(os.path.join(model, "config.json")) as f:
        got_cfg = json.load(f)
    check("config.json (eps '1e-6' read as a number)",
          all(got_cfg[k] == v for k, v in CFG.items()) and got_cfg["format_version"] == 1, json.dumps(got_cfg))

    # A step folder, an older step, bf16.
    rc, out, _ = convert(os.path.join(ckpt, "100"), "--out", os.path.join(tmp, "m100"), "--config", run_cfg)
    rc2, out2, _ = convert(ckpt, "--step", "100", "--out", os.path.join(tmp, "m100b"), "--config", run_cfg)
    same = rc == 0 and rc2 == 0 and open(os.path.join(tmp, "m100", "model.safetensors"), "rb").read() == \
        open(os.path.join(tmp, "m100b", "model.safetensors"), "rb").read()
    check("a step folder = --step N of its root", same and "step 100" in out2, out + out2)
    rc, out, err = convert(ckpt, "--out", os.path.join(tmp, "mbf"), "--config", run_cfg, "--dtype", "bf16")
    bf = ttt_numpy.read_safetensors(os.path.join(tmp, "mbf", "model.safetensors")) if rc == 0 else {}
    rel = max((float(np.abs(bf[n] - want[n]).max() / np.abs(want[n]).max()) for n in want), default=1.0)
    check(f"--dtype bf16 (max relative error {rel:.2g})", rc == 0 and rel <= 2 ** -8, err)

    # Round trip: format v1 -> official -> format v1, bit for bit; the official arrays too.
    back = os.path.join(tmp, "official")
    rc, out, err = convert(model, "--to-official", "--out", back, "--step", "2500")
    ok = rc == 0
    if ok:
        mw = os.path.join(back, "2500", "model_weights")
        for name, a in arrays.items():
            t = ts.open({"driver": "zarr", "path": name,
                         "kvstore": {"driver": "ocdbt", "base": "file://" + mw}}).result().read().result()
            ok = ok and t.dtype == np.float32 and np.array_equal(t.view(np.uint32), a.view(np.uint32))
        rc, out, err = convert(back, "--out", os.path.join(tmp, "model2"), "--config", run_cfg)
        ok = ok and rc == 0 and open(os.path.join(model, "model.safetensors"), "rb").read() == \
            open(os.path.join(tmp, "model2", "model.safetensors"), "rb").read()
    check("round trip v1 -> official -> v1 is bit-exact", ok, err)

    # The converted model through ttt-perplexity, against the numpy twin, with and without test-time training.
    T = 70  # 4 full mini-batches of 16 and a partial one; the window (24) slides
    ids = [0] + [int(v) for v in rng.integers(2, CFG["vocab_size"], T - 1)]
    ids[33] = 0  # a BOS target inside the document: left out of the inner loss
    tok_file = os.path.join(tmp, "tokens.txt")
    with open(tok_file, "w") as f:
        f.write(" ".join(map(str, ids)) + "\n")
    cfg, w = ttt_numpy.load(model)
    for ttt in (False, True):
        nll_file = os.path.join(tmp, f"nll{int(ttt)}.txt")
        rc, out, err = run(os.path.join(BIN, "ttt-perplexity"), "-m", model, "--tokens", tok_file, "--nll-out",
                           nll_file, "-q", *([] if ttt else ["--no-ttt"]))
        if rc != 0:
            check(f"ttt-perplexity ttt={int(ttt)}", False, err[-500:])
            continue
        got = np.loadtxt(nll_file, ndmin=1)  # its first line, "# written by ttt-perplexity ...", a comment
        ref = ttt_numpy.Model(cfg, w).evaluate(ids, ttt)
        diff = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
        check(f"ttt-perplexity {'with' if ttt else 'without'} TTT vs numpy: max |NLL diff| {diff:.3g}", diff < 2e-3,
              f"{got.shape} vs {ref.shape}")
    ref_ttt, ref_base = ttt_numpy.Model(cfg, w).evaluate(ids, True), ttt_numpy.Model(cfg, w).evaluate(ids, False)
    check("test-time training changes the later losses", np.abs(ref_ttt[16:] - ref_base[16:]).max() > 1e-3)

    # Errors: one line naming what is wrong, non-zero exit.
    def bad_ckpt(name, cfg=CFG, drop=(), edit=None):
        d = os.path.join(tmp, name)
        a = official_arrays(cfg, rng)
        if edit:
            edit(a)
        write_checkpoint(d, 1, a, cfg, drop=drop)
        return d

    out_n = iter(range(100))

    def fresh():
        return os.path.join(tmp, f"out{next(out_n)}")

    ffn_post = f"{H}blocks.ffn_post_norm.weight"
    d = bad_ckpt("no_array", drop=(ffn_post,))
    expect_error("an array listed but not stored", [d, "--out", fresh(), "--config", run_cfg], ffn_post)
    d = os.path.join(tmp, "unlisted")
    a = official_arrays(CFG, rng)
    del a[ffn_post]
    write_checkpoint(d, 1, a, CFG)
    expect_error("a missing array", [d, "--out", fresh(), "--config", run_cfg], ffn_post, "missing")
    knorm = f"{H}blocks.seq_modeling_block.k_norm.weight"
    d = bad_ckpt("bad_shape", edit=lambda a: a.update({knorm: np.ones((3, 18), np.float32)}))
    expect_error("a wrong shape", [d, "--out", fresh(), "--config", run_cfg], knorm, "(3, 18)", "(3, 16)")
    os.makedirs(os.path.join(tmp, "empty_root"))
    expect_error("an empty manager root", [os.path.join(tmp, "empty_root"), "--out", fresh(), "--config", run_cfg],
                 "empty_root", "no checkpoint")
    wide = os.path.join(tmp, "wide.yaml")
    write_run_config(wide, CFG, intermediate_size=48)
    expect_error("a config that disagrees with the arrays", [ckpt, "--out", fresh(), "--config", wide],
                 f"{H}blocks.feed_forward.w1.weight", "(3, 32, 40)", "(3, 32, 48)")
    expect_error("a preset that disagrees", [ckpt, "--out", fresh(), "--preset", "125m"], "wte", "(61, 32)",
                 "(128256, 768)")
    expect_error("no preset fits and no config", [ckpt, "--out", fresh()], "--config")
    expect_error("--step that does not exist", [ckpt, "--step", "7", "--out", fresh(), "--config", run_cfg],
                 "no step 7", "100, 2500")
    expect_error("a non-empty --out", [ckpt, "--out", model, "--config", run_cfg], "not empty", "--force")
    expect_error("--out inside the input", [ckpt, "--out", os.path.join(ckpt, "x"), "--config", run_cfg], "overlaps")
    rc, _, err = convert(ckpt, "--out", model, "--config", run_cfg, "--force")
    check("--force replaces a non-empty --out", rc == 0, err)
    fake = os.path.join(tmp, "fake_site")
    os.makedirs(fake)
    with open(os.path.join(fake, "tensorstore.py"), "w") as f:
        f.write("raise ImportError('no tensorstore here')\n")
    env = dict(os.environ, PYTHONPATH=fake)
    expect_error("a missing dependency says how to install it", [ckpt, "--out", fresh(), "--config", run_cfg],
                 "tensorstore", "pip install", env=env)

    # --tokenizer: copied along by the converter; ttt-perplexity --tokenizer reads text with it. A byte-level BPE
    # of the 256 single bytes (GPT-2's byte alphabet, no merges) encodes text as the built-in byte tokenizer does.
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    alphabet, extra = {}, 0
    for b in range(256):
        alphabet[b] = chr(b) if b in keep else chr(256 + extra)
        extra += b not in keep
    tok = os.path.join(tmp, "bytes.json")
    with open(tok, "w") as f:
        json.dump({"model": {"type": "BPE", "vocab": {alphabet[b]: b for b in range(256)}, "merges": []},
                   "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
                   "added_tokens": []}, f)
    rc, out, err = convert(ckpt, "--out", os.path.join(tmp, "mtok"), "--config", run_cfg, "--tokenizer", tok)
    check("--tokenizer copies the file", rc == 0 and os.path.isfile(os.path.join(tmp, "mtok", "tokenizer.json")), err)
    tiny = os.path.join(tmp, "tiny")
    rc, _, err = run(os.path.join(BIN, "ttt-make-model"), "--preset", "tiny", "--seed", "3", "--out", tiny)
    text = os.path.join(tmp, "doc.txt")
    with open(text, "w") as f:
        f.write("In the beginning the converter read the checkpoint, and the model read the text. " * 3)
    nll = []
    for extra in ([], ["--tokenizer", tok]):
        out_file = os.path.join(tmp, f"nll_text{len(extra)}.txt")
        rc2, _, err2 = run(os.path.join(BIN, "ttt-perplexity"), "-m", tiny, "-f", text, "-q", "--nll-out", out_file,
                           *extra)
        nll.append(open(out_file).read() if rc2 == 0 else err2)
    check("ttt-perplexity --tokenizer FILE", rc == 0 and nll[0] == nll[1] and len(nll[0].split()) > 200,
          err + nll[1][-300:])


if __name__ == "__main__":
    sys.exit(main())
