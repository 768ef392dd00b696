#!/usr/bin/env python3
"""Converts the released TTT-E2E checkpoints (orbax CheckpointManager roots of
the official JAX code, test-time-training/e2e) to a format-v1 model directory,
and back with --to-official. Reads and writes the OCDBT + zarr v2 layout with
tensorstore alone: no JAX, no orbax. See docs/official-checkpoints.md."""
import argparse
import json
import os
import shutil
import struct
import sys

PROG = "convert_official"
INSTALL = "python3 -m pip install numpy tensorstore PyYAML  (tools/setup.sh test puts them in build/venv)"


class Fail(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def need(module):
    try:
        return __import__(module)
    except ImportError:
        pip = {"yaml": "PyYAML"}.get(module, module)
        raise Fail(f"the Python package '{pip}' is missing: {INSTALL}")


# ---------------------------------------------------------------- configuration

# The released models (README of test-time-training/e2e and configs/experiment/*/pretrain/*-e2e.yaml).
COMMON = dict(vocab_size=128256, rms_norm_eps=1e-6, rope_theta=500000.0, tie_word_embeddings=True, qk_norm=True,
              pre_norm=True, post_norm=True, sliding_window_size=8192, mini_batch_size=1024, prime=True,
              inner_lr=1.0, inner_clip_gradient=1.0, bos_token_id=128000, eos_token_id=128001)
PRESETS = {
    "125m": dict(COMMON, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=1664, suffix_len=3),
    "1b": dict(COMMON, hidden_size=2048, num_hidden_layers=24, num_attention_heads=32, intermediate_size=4352, suffix_len=6),
    "3b": dict(COMMON, hidden_size=2560, num_hidden_layers=32, num_attention_heads=32, intermediate_size=5632, suffix_len=8),
}
# Keys of the official ModelConfig that map one to one, with its defaults (ttt/config.py) for a config that omits one.
MODEL_KEYS = dict(vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=2048, rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
                  qk_norm=True, pre_norm=True, post_norm=True, sliding_window_size=1024, mini_batch_size=1024,
                  suffix_len=0, prime=False, bos_token_id=1, eos_token_id=2)
FLOAT_KEYS = ("rms_norm_eps", "rope_theta", "inner_lr", "inner_clip_gradient")


def as_number(value, key, kind):
    """YAML 1.1 reads '1e-6' (no dot) as a string; accept that and reject anything else that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Fail(f"config key '{key}' = {value!r} is not a number")
    try:
        return kind(float(value)) if kind is float else int(value)
    except ValueError:
        raise Fail(f"config key '{key}' = {value!r} is not a number")


def config_from_yaml(path, warn):
    """The Hydra run config (outputs/<date>/<time>/.hydra/config.yaml) -> format-v1 keys."""
    yaml = need("yaml")
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise Fail(f"{path}: cannot read the run config: {e}")
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise Fail(f"{path}: no 'model' section; give the composed run config (.hydra/config.yaml of the run)")
    model, training = doc["model"], doc.get("training") or {}
    cfg = {}
    for key, default in MODEL_KEYS.items():
        if key not in model:
            warn(f"{path}: model.{key} is missing; using the official default {default}")
        v = model.get(key, default)
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise Fail(f"{path}: model.{key} = {v!r} is not true/false")
            cfg[key] = v
        else:
            cfg[key] = as_number(v, f"model.{key}", float if key in FLOAT_KEYS else int)
    block = model.get("seq_modeling_block", "self_attention")
    if block != "SWA":
        # Full attention: every query sees the whole training context.
        cfg["sliding_window_size"] = as_number(model.get("seq_len", 131072), "model.seq_len", int)
        warn(f"{path}: model.seq_modeling_block is {block!r}, not 'SWA': using the window seq_len = {cfg['sliding_window_size']}")
    inner = training.get("optimizer_inner") or {}
    cfg["inner_lr"] = as_number(inner.get("lr", 0.01), "training.optimizer_inner.lr", float)
    cfg["inner_clip_gradient"] = as_number(inner.get("clip_gradient", 0.0), "training.optimizer_inner.clip_gradient", float)
    if not inner:
        warn(f"{path}: training.optimizer_inner is missing; using the official SGD defaults (lr 0.01, no clipping)")
    return cfg


def full_config(cfg, tokenizer=None):
    out = {"format": "ttt-e2e", "format_version": 1}
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "rms_norm_eps", "rope_theta", "tie_word_embeddings", "qk_norm", "pre_norm", "post_norm",
                "sliding_window_size", "mini_batch_size", "suffix_len", "prime", "inner_lr", "inner_clip_gradient",
                "bos_token_id", "eos_token_id"):
        out[key] = float(cfg[key]) if key in FLOAT_KEYS else cfg[key]
    if not out["prime"]:
        out["suffix_len"] = 0
    if tokenizer:
        out["tokenizer"] = tokenizer
    return out


# ---------------------------------------------------------------- names and shapes

H = "language_model.model.h."
OUTER = {"attn.wq": "blocks.seq_modeling_block.wq", "attn.wk": "blocks.seq_modeling_block.wk",
         "attn.wv": "blocks.seq_modeling_block.wv", "attn.wo": "blocks.seq_modeling_block.wo",
         "attn.q_norm": "blocks.seq_modeling_block.q_norm", "attn.k_norm": "blocks.seq_modeling_block.k_norm",
         "mlp.w1": "blocks.feed_forward.w1", "mlp.w3": "blocks.feed_forward.w3", "mlp.w2": "blocks.feed_forward.w2",
         "seq_norm": "blocks.seq_norm", "seq_post_norm": "blocks.seq_post_norm",
         "ffn_norm": "blocks.ffn_norm", "ffn_post_norm": "blocks.ffn_post_norm"}
PRIME = {"prime_norm": "prime_storage.ffn_prime_norm", "prime_post_norm": "prime_storage.ffn_prime_post_norm",
         "prime.w1": "prime_storage.feed_forward_prime.w1", "prime.w3": "prime_storage.feed_forward_prime.w3",
         "prime.w2": "prime_storage.feed_forward_prime.w2"}
WTE, LN_F, LM_HEAD = "language_model.model.wte.weight", "language_model.model.ln_f.weight", "language_model.lm_head.weight"
# Model state that orbax saves with the weights (the SWA key/value cache's initial zeros): not weights.
STATE_SUFFIXES = (".kv_cache_index.init.0", ".kv_cache_index.init.1")


def official_shapes(cfg):
    """Official array name -> (shape, format-v1 name pattern or None)."""
    V, D, L, I = cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    E = D // cfg["num_attention_heads"]
    S = cfg["suffix_len"] if cfg["prime"] else 0
    mat = {"attn.wq": (D, D), "attn.wk": (D, D), "attn.wv": (D, D), "attn.wo": (D, D), "attn.q_norm": (E,),
           "attn.k_norm": (E,), "mlp.w1": (D, I), "mlp.w3": (D, I), "mlp.w2": (I, D)}
    out = {WTE: ((V, D), "wte"), LN_F: ((D,), "ln_f")}
    for v1, off in OUTER.items():
        out[H + off + ".weight"] = ((L, *mat.get(v1, (D,))), v1)
    if S:
        for v1, off in PRIME.items():
            inner = {"prime.w1": (D, I), "prime.w3": (D, I), "prime.w2": (I, D)}.get(v1, (D,))
            out[H + off + ".weight"] = ((S, *inner), v1)
    if not cfg["tie_word_embeddings"]:
        out[LM_HEAD] = ((D, V), "lm_head")
    return out


def shape_str(s):
    return "(" + ", ".join(str(x) for x in s) + ")"


def check_config(cfg, where):
    D, H_, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    if H_ <= 0 or D % H_ or (D // H_) % 2:
        raise Fail(f"{where}: hidden_size {D} / num_attention_heads {H_} must give an even head_dim")
    if cfg["prime"] and not 0 < cfg["suffix_len"] <= L:
        raise Fail(f"{where}: suffix_len {cfg['suffix_len']} must be in 1..num_hidden_layers ({L}) when prime is on")


# ---------------------------------------------------------------- the official layout (tensorstore)

def find_step(ckpt, step):
    """CKPT_DIR is a manager root (integer-named step folders) or one step folder -> (step folder, model_weights)."""
    if not os.path.isdir(ckpt):
        raise Fail(f"{ckpt}: not a directory")
    if os.path.basename(os.path.normpath(ckpt)) == "model_weights" and os.path.isfile(os.path.join(ckpt, "_METADATA")):
        ckpt = os.path.dirname(os.path.normpath(ckpt)) or "."  # the item folder itself: take its step folder
    if os.path.isdir(os.path.join(ckpt, "model_weights")):
        if step is not None and os.path.basename(os.path.normpath(ckpt)) != str(step):
            raise Fail(f"{ckpt}: is the step folder {os.path.basename(os.path.normpath(ckpt))}, but --step {step} was asked")
        return ckpt, os.path.join(ckpt, "model_weights")
    steps = sorted(int(n) for n in os.listdir(ckpt)
                   if n.isdigit() and os.path.isdir(os.path.join(ckpt, n, "model_weights")))
    if not steps:
        raise Fail(f"{ckpt}: no checkpoint: neither a step folder with model_weights/ nor a manager root with "
                   f"integer-named step folders")
    if step is None:
        step = steps[-1]  # the model is the latest step
    elif step not in steps:
        raise Fail(f"{ckpt}: no step {step}; the steps here are {', '.join(map(str, steps))}")
    folder = os.path.join(ckpt, str(step))
    return folder, os.path.join(folder, "model_weights")


def list_arrays(weights_dir):
    """Array names that hold data, from the pytree metadata orbax writes (_METADATA)."""
    path = os.path.join(weights_dir, "_METADATA")
    try:
        with open(path) as f:
            tree = json.load(f)["tree_metadata"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Fail(f"{path}: cannot read the orbax pytree metadata: {e}")
    names = {}
    for key, entry in tree.items():
        value = entry.get("value_metadata", {})
        if value.get("value_type") != "jax.Array" or value.get("skip_deserialize"):
            continue  # biases, step counters, empty prime slots, a tied lm_head: saved as None
        names[".".join(str(k["key"]) for k in entry["key_metadata"])] = value.get("write_shape")
    return names


def ocdbt_spec(weights_dir, name):
    return {"driver": "zarr", "kvstore": {"driver": "ocdbt", "base": "file://" + os.path.abspath(weights_dir)},
            "path": name}


def read_array(ts, weights_dir, name):
    try:
        return ts.open(ocdbt_spec(weights_dir, name), read=True).result().read().result()
    except Exception as e:  # tensorstore raises ValueError for NOT_FOUND and for corrupt data alike
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise Fail(f"{weights_dir}: cannot read array {name}: {first}")


def write_official(root, step, arrays, state, np, ts):
    """A manager root with one step holding model_weights only, as orbax 0.11 (the pinned version) writes it:
    arrays go to a per-process OCDBT store (ocdbt.process_0) that is then merged into the item's root store;
    zarr v2, zstd level 1, one chunk per array. `state` arrays (the KV cache zeros) are declared but hold no chunk:
    a reader sees the fill value 0."""
    import base64
    import time
    weights = os.path.join(root, str(step), "model_weights")
    os.makedirs(weights)
    ocdbt_options = {"config": {"max_inline_value_bytes": 1024, "max_decoded_node_bytes": 100000000,
                                "manifest_kind": "single"}, "assume_config": True}
    context = ts.Context({"cache_pool#ocdbt": {"total_bytes_limit": 100000000}})
    proc = {"driver": "ocdbt", "base": {"driver": "file", "path": os.path.abspath(os.path.join(weights, "ocdbt.process_0"))},
            "cache_pool": "cache_pool#ocdbt", **ocdbt_options}
    txn = ts.Transaction()  # one commit: the arrays share data files, as orbax's batched writes do
    for name, a in list(arrays.items()) + list(state.items()):
        is_state = name in state
        # State is bfloat16 (the official compute dtype), written one layer per chunk to bound the memory.
        chunks = [1, *a.shape[1:]] if is_state else list(a.shape)
        t = ts.open({"driver": "zarr", "kvstore": dict(proc, path=name), "create": True,
                     "store_data_equal_to_fill_value": True,
                     "metadata": {"shape": list(a.shape), "chunks": chunks, "dtype": "bfloat16" if is_state else "<f4",
                                  "compressor": {"id": "zstd", "level": 1}, "fill_value": None,
                                  "dimension_separator": "."}}, context=context).result()
        if is_state:
            zeros = np.zeros(a.shape[1:], dtype=ts.bfloat16.numpy_dtype)
            for i in range(a.shape[0]):
                t[i].write(zeros).result()  # orbax readers want every chunk present, zeros included
        else:
            t.with_transaction(txn).write(a).result()
    txn.commit_sync()
    # The merge references the per-process data files from the root store; both must share one context.
    parent = ts.KvStore.open({"driver": "ocdbt", "base": {"driver": "file", "path": os.path.abspath(weights)},
                              **ocdbt_options}, context=context).result()
    child = ts.KvStore.open({"driver": "ocdbt", "base": proc["base"]}, context=context).result()
    txn = ts.Transaction(atomic=True)
    child.experimental_copy_range_to(parent.with_transaction(txn)).result()
    txn.commit_sync()

    # _METADATA: one entry per pytree leaf, None leaves included, as the official MetaModel.weights() has them.
    tree = {}

    def leaf(keys, shape):
        meta = ({"value_type": "jax.Array", "skip_deserialize": False, "write_shape": list(shape)} if shape is not None
                else {"value_type": "None", "skip_deserialize": True})
        tree[str(tuple(keys))] = {"key_metadata": [{"key": k, "key_type": 1 if k.isdigit() else 2} for k in keys],
                                  "value_metadata": meta}

    leaf(["step_index", "init"], None)
    for name in list(arrays) + list(state):
        keys = name.split(".")
        leaf(keys, (arrays.get(name) if name in arrays else state[name]).shape)
        if keys[-1] == "weight" and "norm" in keys[-2]:
            leaf(keys[:-1] + ["bias"], None)  # equinox RMSNorm(use_bias=False) keeps a None bias
    leaf(["language_model", "model", "h", "blocks", "seq_modeling_block", "chunk_index", "init"], None)
    for slot in ("ffn_prime_norm", "ffn_prime_post_norm", "feed_forward_prime"):
        leaf(["language_model", "model", "h", "blocks", slot], None)
    if LM_HEAD not in arrays:
        leaf(["language_model", "lm_head"], None)
    with open(os.path.join(weights, "_METADATA"), "w") as f:
        json.dump({"tree_metadata": tree, "use_zarr3": False, "store_array_data_equal_to_fill_value": True,
                   "custom_metadata": None}, f)
    sharding = {base64.b64encode(n.encode()).decode(): json.dumps({"sharding_type": "SingleDeviceSharding",
                                                                     "device_str": "TFRT_CPU_0"})
                for n in list(arrays) + list(state)}
    with open(os.path.join(weights, "_sharding"), "w") as f:
        json.dump(sharding, f)
    os.makedirs(os.path.join(weights, "array_metadatas"))
    with open(os.path.join(weights, "array_metadatas", "process_0"), "w") as f:
        json.dump({"array_metadatas": [{"array_metadata": {"param_name": n, "write_shape": list(a.shape),
                                                           "chunk_shape": list(a.shape), "ext_metadata": None}}
                                       for n, a in list(arrays.items()) + list(state.items())]}, f)
    now = time.time_ns()
    with open(os.path.join(root, str(step), "_CHECKPOINT_METADATA"), "w") as f:
        json.dump({"item_handlers": {"model_weights": "orbax.checkpoint._src.handlers.standard_checkpoint_handler."
                                                      "StandardCheckpointHandler"},
                   "metrics": {}, "performance_metrics": {}, "init_timestamp_nsecs": now,
                   "commit_timestamp_nsecs": now, "custom_metadata": {}}, f)


# ---------------------------------------------------------------- safetensors (format v1)

def to_bf16_bits(np, a):
    """float32 -> bfloat16 bit patterns, round to nearest even (NaN kept NaN)."""
    u = np.ascontiguousarray(a, dtype="<f4").view("<u4")
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
    return np.where(np.isnan(a), np.uint16(0x7FC0), rounded).astype("<u2")


def write_safetensors(np, path, tensors, dtype):
    header, blobs, offset = {"__metadata__": {"format": "pt", "producer": "ttt-cl convert_official"}}, [], 0
    for name, a in tensors.items():
        blob = (to_bf16_bits(np, a) if dtype == "bf16" else np.ascontiguousarray(a, dtype="<f4")).tobytes()
        header[name] = {"dtype": "BF16" if dtype == "bf16" else "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def read_safetensors(np, path):
    """-> {name: float32 array}; F16 and BF16 widen exactly."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8:8 + n])
    except (OSError, ValueError, struct.error) as e:
        raise Fail(f"{path}: not a safetensors file: {e}")
    out, base = {}, 8 + n
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        raw = data[base + a:base + b]
        if e["dtype"] == "F32":
            arr = np.frombuffer(raw, "<f4")
        elif e["dtype"] == "BF16":
            arr = (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4")
        elif e["dtype"] == "F16":
            arr = np.frombuffer(raw, "<f2").astype("<f4")
        else:
            raise Fail(f"{path}: tensor {name}: unsupported dtype {e['dtype']}")
        out[name] = arr.reshape(e["shape"])
    return out


# ---------------------------------------------------------------- the two directions

def prepare_out(out, inputs, force):
    real = os.path.realpath(out)
    for i in inputs:
        ri = os.path.realpath(i)
        if real == ri or real.startswith(ri + os.sep) or ri.startswith(real + os.sep):
            raise Fail(f"--out {out} overlaps the input {i}; write somewhere else")
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise Fail(f"--out {out} exists and is not a directory")
        if os.listdir(out):
            if not force:
                raise Fail(f"--out {out} is not empty; give --force to replace its contents")
            shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)


def to_v1(args, warn):
    np, ts = need("numpy"), need("tensorstore")
    folder, weights = find_step(args.ckpt, args.step)
    if args.config:
        cfg, where = config_from_yaml(args.config, warn), args.config
    else:
        preset = args.preset or guess_preset(ts, weights)
        cfg, where = dict(PRESETS[preset]), f"--preset {preset}"
    check_config(cfg, where)
    present = list_arrays(weights)
    expected = official_shapes(cfg)
    missing = [n for n in expected if n not in present]
    if missing:
        raise Fail(f"{weights}: array {missing[0]} is missing ({where} needs it"
                   + (f"; {len(missing) - 1} more missing)" if len(missing) > 1 else ")"))
    extra = [n for n in present if n not in expected and not n.endswith(STATE_SUFFIXES)]
    if extra:
        hint = " (an untied lm_head: the config says tie_word_embeddings)" if LM_HEAD in extra else ""
        raise Fail(f"{weights}: array {extra[0]} is not part of the model that {where} describes{hint}")
    out_tensors = {}
    L, S = cfg["num_hidden_layers"], cfg["suffix_len"] if cfg["prime"] else 0
    for name, (shape, v1) in expected.items():
        a = read_array(ts, weights, name)
        if tuple(a.shape) != tuple(shape):
            raise Fail(f"array {name}: shape {shape_str(a.shape)} in the checkpoint, but {where} gives {shape_str(shape)}")
        if a.dtype != np.float32:
            raise Fail(f"array {name}: dtype {a.dtype}, expected float32")
        if v1 in ("wte", "ln_f", "lm_head"):
            out_tensors[v1] = a
        elif v1 in PRIME:
            for j in range(S):
                out_tensors[f"blocks.{L - S + j}.{v1}"] = a[j]
        else:
            for i in range(L):
                if v1 in ("attn.q_norm", "attn.k_norm") and not cfg["qk_norm"]:
                    continue  # stored even without qk_norm; format v1 leaves them out
                out_tensors[f"blocks.{i}.{v1}"] = a[i]
    prepare_out(args.out, [args.ckpt], args.force)
    tok_name = copy_tokenizer(args.tokenizer, args.out, warn)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(full_config(cfg), f, indent=2)
        f.write("\n")
    order = sorted(out_tensors, key=tensor_order)
    write_safetensors(np, os.path.join(args.out, "model.safetensors"), {n: out_tensors[n] for n in order}, args.dtype)
    n_params = sum(int(a.size) for a in out_tensors.values())
    print(f"{PROG}: step {os.path.basename(os.path.normpath(folder))} of {args.ckpt} -> {args.out} "
          f"({len(out_tensors)} tensors, {n_params:,} parameters, {args.dtype}{', tokenizer ' + tok_name if tok_name else ''})")


def guess_preset(ts, weights):
    """Without --config or --preset: the released model whose width and depth the checkpoint has."""
    name = H + "blocks.seq_modeling_block.wq.weight"
    try:
        L, D, _ = ts.open(ocdbt_spec(weights, name), read=True).result().shape
    except Exception:
        raise Fail(f"{weights}: cannot read {name} to recognise the model; give --config RUN_CONFIG.yaml or --preset")
    for preset, c in PRESETS.items():
        if (c["num_hidden_layers"], c["hidden_size"]) == (L, D):
            print(f"{PROG}: {L} layers of width {D}: the released {preset} model (--preset {preset})")
            return preset
    raise Fail(f"{weights}: {L} layers of width {D} is none of the released models "
               f"({', '.join(PRESETS)}); give the run's config with --config RUN_CONFIG.yaml")


def tensor_order(name):
    parts = name.split(".")
    return (1, int(parts[1]), name) if parts[0] == "blocks" else (0 if name == "wte" else 2, 0, name)


def copy_tokenizer(path, out, warn):
    if not path:
        warn("no --tokenizer: text input (-f) will need tokenizer.json or tokenizer.model in the model directory "
             "(the official models use Llama-3's); token ids (--tokens) work without one")
        return None
    if not os.path.isfile(path):
        raise Fail(f"--tokenizer {path}: no such file")
    name = "tokenizer.json" if path.endswith(".json") else "tokenizer.model"
    shutil.copyfile(path, os.path.join(out, name))
    return name


def to_official(args, warn):
    np, ts = need("numpy"), need("tensorstore")
    cfg_path = os.path.join(args.ckpt, "config.json")
    try:
        with open(cfg_path) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise Fail(f"{cfg_path}: cannot read: {e}")
    for key in MODEL_KEYS:
        if key not in cfg:
            raise Fail(f"{cfg_path}: key '{key}' is missing")
    check_config(cfg, cfg_path)
    tensors = read_safetensors(np, os.path.join(args.ckpt, "model.safetensors"))
    L, D, E = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["hidden_size"] // cfg["num_attention_heads"]
    S = cfg["suffix_len"] if cfg["prime"] else 0

    def get(name, shape):
        if name not in tensors:
            if name.endswith(("q_norm", "k_norm")) and not cfg["qk_norm"]:
                return np.ones(shape, np.float32)  # the official model stores them anyway
            raise Fail(f"{args.ckpt}: tensor {name} is missing")
        a = tensors[name]
        if tuple(a.shape) != tuple(shape):
            raise Fail(f"tensor {name}: shape {shape_str(a.shape)}, but config.json gives {shape_str(shape)}")
        return a

    arrays = {}
    for name, (shape, v1) in official_shapes(cfg).items():
        if v1 in ("wte", "ln_f", "lm_head"):
            arrays[name] = get(v1, shape)
        elif v1 in PRIME:
            arrays[name] = np.stack([get(f"blocks.{L - S + j}.{v1}", shape[1:]) for j in range(S)])
        else:
            arrays[name] = np.stack([get(f"blocks.{i}.{v1}", shape[1:]) for i in range(L)])
    W = cfg["sliding_window_size"]
    # The official SWA blocks save the initial zeros of their key/value cache with the weights.
    state = {H + "blocks.seq_modeling_block.kv_cache_index.init." + k: _Shape((L, W, D)) for k in "01"}
    prepare_out(args.out, [args.ckpt], args.force)
    write_official(args.out, args.step if args.step is not None else 0, arrays, state, np, ts)
    print(f"{PROG}: {args.ckpt} -> {args.out}/{args.step if args.step is not None else 0}/model_weights "
          f"({len(arrays)} arrays)")


class _Shape:
    """Stands for an array that is declared but holds only its fill value."""

    def __init__(self, shape):
        self.shape = shape


def main(argv=None):
    p = argparse.ArgumentParser(prog="convert_official.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", metavar="CKPT_DIR", help="manager root or step folder (with --to-official: a format-v1 model directory)")
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="output directory (must be empty or absent)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--config", metavar="RUN_CONFIG.yaml", help="the run's composed Hydra config (.hydra/config.yaml)")
    g.add_argument("--preset", choices=sorted(PRESETS), help="a released model's configuration")
    p.add_argument("--step", type=int, help="step to convert (default: the latest); with --to-official the step to write (default 0)")
    p.add_argument("--dtype", choices=("f32", "bf16"), default="f32", help="weight dtype of the output (default f32)")
    p.add_argument("--tokenizer", metavar="FILE", help="tokenizer.json or tokenizer.model to copy into the model directory")
    p.add_argument("--to-official", action="store_true", help="the reverse: format-v1 model -> official checkpoint")
    p.add_argument("--force", action="store_true", help="replace the contents of a non-empty --out")
    args = p.parse_args(argv)

    def warn(msg):
        print(f"{PROG}: warning: {msg}", file=sys.stderr)

    try:
        if args.to_official:
            if args.config or args.preset or args.tokenizer or args.dtype != "f32":
                raise Fail("--to-official takes its configuration from CKPT_DIR/config.json: drop --config, --preset, "
                           "--tokenizer and --dtype")
            to_official(args, warn)
        else:
            to_v1(args, warn)
    except Fail as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
