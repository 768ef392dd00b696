#!/usr/bin/env python3
"""End-to-end tests of the command-line tools (stdlib only).

Every bad input must give a clear one-line error naming the file, tensor, key
or device at fault and a non-zero exit status, never a crash or a signal.
Good inputs must reproduce the golden cases through the CLI.

usage: test_cli.py BIN_DIR DATA_DIR
"""
import json
import math
import os
import re
import signal
import xml.etree.ElementTree as ET
import shutil
import struct
import subprocess
import sys
import time
import tempfile
import zlib

BIN, DATA = sys.argv[1], sys.argv[2]
GOLDEN = os.path.join(DATA, "golden")
results = {"passed": 0, "failed": 0}


# Tools outside BIN (the apps directory), relative to it.
ELSEWHERE = {"ttt-bench": os.path.join("..", "bench", "ttt-bench")}


def exe(tool):
    return os.path.join(BIN, ELSEWHERE.get(tool, tool))


def run(tool, *args, stdin=None, env=None):
    full_env = dict(os.environ, **env) if env else None
    p = subprocess.run([exe(tool), *args], input=stdin, capture_output=True, text=True, timeout=600, env=full_env)
    return p.returncode, p.stdout, p.stderr


def check(name, cond, detail=""):
    if cond:
        results["passed"] += 1
        print(f"ok    {name}")
    else:
        results["failed"] += 1
        print(f"FAIL  {name}\n      {detail}")


def expect_error(name, tool, args, *fragments, code=None, env=None):
    rc, out, err = run(tool, *args, env=env)
    lines = [l for l in err.splitlines() if l.strip()]
    ok = rc > 0 and (code is None or rc == code)
    ok = ok and lines and lines[0].startswith(f"{tool}: error: ")
    ok = ok and all(f in err for f in fragments)
    check(name, ok, f"exit {rc}, stderr: {err.strip()[:600]!r}, wanted {fragments}")


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def read_st(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def write_st(path, header, data):
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def tensor(header, data, name):
    e = header[name]
    a, b = e["data_offsets"]
    assert e["dtype"] == "F32"
    return struct.unpack(f"<{(b - a) // 4}f", data[a:b])


def floats(path):
    """The numbers of a --nll-out file (after its "# written by ttt-perplexity ..." line) or a golden NLL file."""
    with open(path) as f:
        return [float(x) for line in f if not line.startswith("#") for x in line.split()]


def png_pixels(path):
    """(width, height, bytes per pixel, rows) of an 8-bit RGB or RGBA non-interlaced PNG (rsvg-convert's)."""
    b = open(path, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", path
    i, idat, hdr = 8, b"", None
    while i < len(b):
        n, kind = struct.unpack(">I4s", b[i:i + 8])
        data = b[i + 8:i + 8 + n]
        i += 12 + n
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", data)
        elif kind == b"IDAT":
            idat += data
    w, h, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, hdr
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    rows, prev = [], bytearray(stride)
    for r in range(h):
        f, line = raw[r * (stride + 1)], bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + prev[x]) & 255
            elif f == 3:
                line[x] = (line[x] + (a + prev[x]) // 2) & 255
            elif f == 4:
                p_ = a + prev[x] - c
                pa, pb, pc = abs(p_ - a), abs(p_ - prev[x]), abs(p_ - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else prev[x] if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def check_plot_legend(name, svg_path, tmp):
    """No curve point under the legend: geometrically on the SVG, and in pixels (rsvg-convert): the legend's
    box looks the same whether or not the curves are drawn."""
    text = open(svg_path).read()
    box = re.search(r'id="legend-box" x="([0-9.]+)" y="([0-9.]+)" width="([0-9.]+)" height="([0-9.]+)"', text)
    if not box:
        check(f"{name}: the plot has a legend box", False, text[:300])
        return
    x0, y0, bw, bh = map(float, box.groups())
    points = [(float(x), float(y)) for d in re.findall(r'class="curve" d="([^"]*)"', text)
              for x, y in re.findall(r"[ML]([0-9.]+) ([0-9.]+)", d)]
    points += [(float(x), float(y)) for x, y in re.findall(r'class="dot" cx="([0-9.]+)" cy="([0-9.]+)"', text)]
    under = [p for p in points if x0 <= p[0] <= x0 + bw and y0 <= p[1] <= y0 + bh]
    check(f"{name}: no curve point lies under the legend ({len(points)} points)", points and not under, under[:5])
    rsvg = shutil.which("rsvg-convert")
    if not rsvg:
        check(f"{name}: rsvg-convert renders the plot", False, "rsvg-convert not found (Debian package librsvg2-bin)")
        return
    bare = os.path.join(tmp, "bare.svg")
    with open(bare, "w") as f:
        f.write("\n".join(l for l in text.splitlines() if 'class="curve"' not in l and 'class="dot"' not in l))
    pngs = [os.path.join(tmp, "full.png"), os.path.join(tmp, "bare.png")]
    for src, dst in zip([svg_path, bare], pngs):
        subprocess.run([rsvg, src, "-o", dst], check=True, timeout=120)
    (w, h, bpp, full), (_, _, _, no_curves) = png_pixels(pngs[0]), png_pixels(pngs[1])
    xs = slice(max(0, int(x0) - 1) * bpp, min(w, int(x0 + bw) + 2) * bpp)
    ys = range(max(0, int(y0) - 1), min(h, int(y0 + bh) + 2))
    covered = [y for y in ys if full[y][xs] != no_curves[y][xs]]
    drawn = sum(a != b for a, b in zip(full, no_curves))
    check(f"{name}: in the PNG the curves touch no pixel of the legend box ({drawn} rows hold curves)",
          drawn > 0 and not covered, f"rows {covered[:5]} differ under the legend")


def make_markov_byte_model(src, dst, chain):
    """A byte-level model whose greedy output follows `chain` (byte -> next
    byte): attention and MLP outputs are zeroed, so the last residual is the
    input's embedding e_k, and an untied lm_head maps slot k to the next byte."""
    shutil.copytree(src, dst)
    with open(os.path.join(dst, "config.json")) as f:
        cfg = json.load(f)
    cfg["tie_word_embeddings"] = False
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f)
    st = os.path.join(dst, "model.safetensors")
    header, data = read_st(st)
    data = bytearray(data)
    V, D = cfg["vocab_size"], cfg["hidden_size"]
    for name, e in header.items():
        if name != "__metadata__" and name.endswith(("attn.wo", ".w2")):
            a, b = e["data_offsets"]
            data[a:b] = bytes(b - a)
    slot = {byte: i for i, byte in enumerate(chain)}
    wte = [0.0] * (V * D)
    for v in range(V):
        wte[v * D + slot.get(v, D - 1)] = 1.0
    head = [0.0] * (D * V)
    for byte, nxt in chain.items():
        head[slot[byte] * V + nxt] = 5.0
    a, b = header["wte"]["data_offsets"]
    data[a:b] = struct.pack(f"<{V * D}f", *wte)
    header["lm_head"] = {"dtype": "F32", "shape": [D, V], "data_offsets": [len(data), len(data) + 4 * D * V]}
    data += struct.pack(f"<{D * V}f", *head)
    write_st(st, header, bytes(data))
    return dst


def generate_tests(tmp):
    """ttt-generate: whole UTF-8 characters, stop strings, eos, JSON, usage."""
    rc, out, _ = run("ttt-generate", "--help")
    flags = ["--model", "--prompt", "--file", "--n-predict", "--temperature", "--top-k", "--top-p", "--repeat-penalty",
             "--seed", "--stop", "--no-ttt", "--full-attention", "--json", "--device"]
    check("ttt-generate --help", rc == 0 and all(f in out for f in flags), out[:300])
    base = os.path.join(tmp, "gen-base")
    rc, _, err = run("ttt-make-model", "--preset", "tiny", "--out", base)
    if rc != 0:
        check("make tiny model for ttt-generate", False, err[-300:])
        return
    # 'A' -> 0xC3 -> 0xA9 -> 'A': the 2-byte character é comes as two tokens.
    model = make_markov_byte_model(base, os.path.join(tmp, "gen-markov"), {0x41: 0xC3, 0xC3: 0xA9, 0xA9: 0x41})
    exe = os.path.join(BIN, "ttt-generate")
    js = os.path.join(tmp, "gen.json")
    p = subprocess.run([exe, "-m", model, "-p", "A", "-n", "6", "--json", js], capture_output=True, timeout=600)
    check("ttt-generate prints a character split across two tokens whole",
          p.returncode == 0 and p.stdout == "\u00e9A\u00e9A".encode(), f"exit {p.returncode}, stdout {p.stdout!r}, "
          f"stderr {p.stderr.decode(errors='replace')[-400:]!r}")
    try:
        with open(js) as f:
            j = json.load(f)
        ok = j["text"] == "\u00e9A\u00e9A" and j["generated_tokens"] == 6 and j["stopped"] == "length"
        ok = ok and j["ids"] == [0xC3, 0xA9, 0x41, 0xC3, 0xA9, 0x41] and "decode_tokens_per_s" in j
    except (OSError, ValueError, KeyError) as e:
        ok, j = False, str(e)
    check("ttt-generate --json", ok, str(j)[:400])
    err = p.stderr.decode(errors="replace")
    check("ttt-generate reports prefill and decode tok/s and steps on stderr",
          "tok/s" in err and "test-time steps" in err, err[-400:])
    p = subprocess.run([exe, "-m", model, "-p", "A", "-n", "20", "--stop", "\u00e9A\u00e9"], capture_output=True, timeout=600)
    check("ttt-generate stops at a stop string without printing it", p.returncode == 0 and p.stdout == b"", repr(p.stdout))
    p = subprocess.run([exe, "-m", model, "-p", "A", "-n", "20", "--stop", "A\u00e9"], capture_output=True, timeout=600)
    check("ttt-generate prints the text before a stop string", p.returncode == 0 and p.stdout == "\u00e9".encode(),
          repr(p.stdout))
    for mode in (["--no-ttt"], ["--full-attention"]):
        p = subprocess.run([exe, "-m", model, "-p", "A", "-n", "5", *mode], capture_output=True, timeout=600)
        check(f"ttt-generate {mode[0]}", p.returncode == 0 and p.stdout == "\u00e9A\u00e9".encode(), repr(p.stdout))
    with open(os.path.join(model, "config.json")) as f:
        cfg = json.load(f)
    cfg["eos_token_id"] = 0x41
    eos_model = copy_model(model, os.path.join(tmp, "gen-eos"))
    with open(os.path.join(eos_model, "config.json"), "w") as f:
        json.dump(cfg, f)
    p = subprocess.run([exe, "-m", eos_model, "-p", "A", "-n", "20", "--json", js], capture_output=True, timeout=600)
    with open(js) as f:
        j = json.load(f)
    check("ttt-generate stops at eos", p.returncode == 0 and p.stdout == "\u00e9".encode() and j["stopped"] == "eos",
          repr(p.stdout))
    # Ctrl-C: stops cleanly (exit 130) with what was generated so far, whole characters, and the JSON.
    import signal
    had_json = os.path.exists(js)
    proc = subprocess.Popen([exe, "-m", model, "-p", "A", "-n", "1000000", "--no-ttt", "--json", js],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # The first character has been generated. Read the fd itself: a buffered read could take more
    # than 2 bytes from the pipe, and communicate() below reads the fd, not that buffer.
    first = b""
    while len(first) < 2:
        chunk = os.read(proc.stdout.fileno(), 2 - len(first))
        if not chunk:
            break
        first += chunk
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    text = first + rest
    try:
        with open(js + ".partial" if had_json else js) as f:  # an interrupt replaces no complete JSON
            j = json.load(f)
    except (OSError, ValueError) as e:
        j = {"error": str(e)}
    ok = proc.returncode == 130 and j.get("stopped") == "interrupt" and j.get("text", "").encode() == text
    ok = ok and text.decode("utf-8", errors="strict").replace("\u00e9A", "") in ("", "\u00e9")
    check("ttt-generate stops cleanly on Ctrl-C", ok, f"exit {proc.returncode}, {len(text)} bytes, json {str(j)[:200]}")
    expect_error("ttt-generate without a prompt", "ttt-generate", ["-m", model], "-p")
    expect_error("ttt-generate bad top-p", "ttt-generate", ["-m", model, "-p", "A", "--top-p", "0"], "top-p")
    expect_error("ttt-generate --no-ttt with --full-attention", "ttt-generate",
                 ["-m", model, "-p", "A", "--no-ttt", "--full-attention"], "--full-attention")
    expect_error("ttt-generate unknown flag", "ttt-generate", ["--bogus"], "bogus", code=2)

    # ttt-perplexity --full-attention: the sliding window when it covers the document, not otherwise.
    tiny = os.path.join(GOLDEN, "tiny")
    toks = os.path.join(tiny, "tokens.txt")
    wide = copy_model(tiny, os.path.join(tmp, "wide-window"))
    with open(os.path.join(wide, "config.json")) as f:
        cfg = json.load(f)
    cfg["sliding_window_size"] = 4096
    with open(os.path.join(wide, "config.json"), "w") as f:
        json.dump(cfg, f)
    outs = {}
    for name, m, flag in [("full", tiny, "--full-attention"), ("swa", tiny, "--no-ttt"), ("wide", wide, "--no-ttt")]:
        path = os.path.join(tmp, f"pp-{name}.txt")
        rc, _, err = run("ttt-perplexity", "-m", m, "--tokens", toks, flag, "-q", "--nll-out", path)
        outs[name] = floats(path) if rc == 0 else err
    ok = all(isinstance(v, list) for v in outs.values())
    ok = ok and max(abs(a - b) for a, b in zip(outs["full"], outs["wide"])) < 1e-5
    ok = ok and max(abs(a - b) for a, b in zip(outs["full"], outs["swa"])) > 1e-3
    check("ttt-perplexity --full-attention equals a window covering the document", ok, str(outs)[:400])


class Fixtures:
    """What the cases share, made on first use in one temporary directory."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.tiny = os.path.join(GOLDEN, "tiny")
        self.tokens = os.path.join(self.tiny, "tokens.txt")
        self.med = os.path.join(GOLDEN, "medium")
        self.mtoks = os.path.join(self.med, "tokens.txt")
        self._made = self._docs = self._long = None

    def token_file(self, name, text):
        p = os.path.join(self.tmp, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def made(self):
        """A byte-level tiny preset made by ttt-make-model (seed 3)."""
        if not self._made:
            self._made = os.path.join(self.tmp, "made-f32")
            if not os.path.exists(self._made):
                rc, _, se = run("ttt-make-model", "--preset", "tiny", "--seed", "3", "--out", self._made)
                assert rc == 0, se
        return self._made

    def docs(self):
        """A directory of two text documents, and their texts."""
        if not self._docs:
            d = os.path.join(self.tmp, "docs")
            texts = {"a.txt": "In the beginning was the word, and the word was with the model. " * 12,
                     "b.txt": "Zwei Dokumente, jedes von vorn: \u00e4\u00f6\u00fc \u2603 " * 9}
            os.makedirs(d, exist_ok=True)
            for name, text in texts.items():
                with open(os.path.join(d, name), "w", encoding="utf-8") as f:
                    f.write(text)
            self._docs = (d, texts)
        return self._docs

    def long_doc(self):
        """20250 bytes of text."""
        if not self._long:
            self._long = self.token_file("long.txt", "The quick brown fox jumps over the lazy dog; " * 450)
        return self._long


CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def help_options(text):
    """A --help's options as {"--name": "its explanation"} (Boost's layout: the flag, then the text beside it or
    on the lines below, further indented)."""
    opts, name = {}, None
    for line in text.splitlines():
        m = re.match(r"^  (?:-\w \[ )?(--[\w-]+)(?: \])?(?: \S+)?(?: \(=[^)]*\))?(?:\s{2,}(.*))?$", line)
        if m:
            name = m.group(1)
            opts[name] = m.group(2) or ""
        elif name and line.startswith("    ") and line.strip():
            opts[name] += " " + line.strip()
        elif not line.strip():
            name = None
    return opts


@case
def help_usage(c):
    tmp = c.tmp
    tiny, tokens = c.tiny, c.tokens
    # --help of every tool explains every flag.
    for tool, flags in [("ttt-perplexity", ["--model", "--file", "--tokens", "--no-ttt", "--inner-lr", "--compare",
                                            "--nll-out", "--json", "--plot", "--device", "--max-tokens",
                                            "--save-weights", "--parse-special", "--ctx", "--chunks",
                                            "--kl-divergence-base", "--kl-divergence"]),
                        ("ttt-tokenize", ["--tokenizer", "--decode", "--parse-special"]),
                        ("ttt-make-model", ["--preset", "--out", "--seed", "--dtype"]),
                        ("ttt-info", ["--help"])]:
        rc, out, _ = run(tool, "--help")
        check(f"{tool} --help", rc == 0 and all(f in out for f in flags), out[:300])

    # Every flag of every tool (and of every ttt-bench command) comes with an explanation.
    commands = [(t, []) for t in ("ttt-perplexity", "ttt-generate", "ttt-niah", "ttt-train", "ttt-tokenize",
                                  "ttt-make-model", "ttt-info")]
    commands += [("ttt-bench", [cmd]) for cmd in ("prefill", "attention", "kernels", "decode", "tune", "peak",
                                                  "compare", "roofline", "train")]
    for tool, sub in commands:
        rc, out, _ = run(tool, *sub, "--help")
        opts = help_options(out)
        bare = [f for f, text in opts.items() if len(text.split()) < 2]
        check(f"{' '.join([tool] + sub)} --help explains each of its {len(opts)} flags", rc == 0 and len(opts) >= 2
              and not bare, f"unexplained: {bare}" if opts else out[:300])
    # --force says what it lets happen to the files already there, and what it still refuses.
    force = help_options(run("ttt-perplexity", "--help")[1]).get("--force", "")
    check("ttt-perplexity --help: --force says which files are replaced, that others stay and the input model is "
          "refused", all(w in force for w in ("config.json", "model.safetensors", "replaced", "other files",
                                              "input model")), force)
    force = help_options(run("ttt-train", "--help")[1]).get("--force", "")
    check("ttt-train --help: --force says which files are replaced and that others stay",
          all(w in force for w in ("optimizer.safetensors", "train.jsonl", "replaced", "other files", "--resume")),
          force)

    # Usage errors exit 2.
    expect_error("unknown flag", "ttt-perplexity", ["--bogus"], "bogus", code=2)
    expect_error("missing --model", "ttt-perplexity", ["--tokens", tokens], "model", code=2)
    expect_error("missing model dir", "ttt-perplexity", ["-m", os.path.join(tmp, "nope"), "--tokens", tokens],
                 "nope", "not a model directory")


@case
def corrupt_models(c):
    tmp = c.tmp
    tiny, tokens = c.tiny, c.tokens
    # Corrupted model files.
    def corrupt(name, edit, *fragments):
        d = copy_model(tiny, os.path.join(tmp, name))
        st = os.path.join(d, "model.safetensors")
        edit(d, st)
        expect_error(name, "ttt-perplexity", ["-m", d, "--tokens", tokens], *fragments)

    def truncate(d, st):
        with open(st, "r+b") as f:
            f.truncate(5)

    def truncate_data(d, st):
        size = os.path.getsize(st)
        with open(st, "r+b") as f:
            f.truncate(size - 1000)

    def header_past_eof(d, st):
        with open(st, "r+b") as f:
            f.write(struct.pack("<Q", 10 ** 9))

    def bad_json(d, st):
        with open(st, "r+b") as f:
            f.seek(8)
            f.write(b"{{{{")

    def edit_header(fn):
        def go(d, st):
            h, data = read_st(st)
            fn(h, len(data))
            write_st(st, h, data)
        return go

    corrupt("truncated file", truncate, "model.safetensors", "truncated")
    corrupt("truncated data", truncate_data, "model.safetensors", "outside")
    corrupt("header length past end", header_past_eof, "model.safetensors", "header length")
    corrupt("bad header JSON", bad_json, "model.safetensors", "not valid JSON")
    corrupt("wrong shape", edit_header(lambda h, n: h["blocks.0.mlp.w1"].update(shape=[48, 32])),
            "blocks.0.mlp.w1", "[48, 32]", "[32, 48]")
    corrupt("missing tensor", edit_header(lambda h, n: h.pop("blocks.1.prime_norm")), "blocks.1.prime_norm",
            "missing tensor")
    corrupt("unknown dtype", edit_header(lambda h, n: h["wte"].update(dtype="Q4_K")), "wte", "unknown dtype")
    corrupt("overlapping offsets",
            edit_header(lambda h, n: h["blocks.0.seq_norm"].update(data_offsets=h["blocks.0.ffn_norm"]["data_offsets"])),
            "overlapping")
    corrupt("out-of-file offsets", edit_header(lambda h, n: h["ln_f"].update(data_offsets=[n, n + 128])), "ln_f",
            "outside")

    def edit_config(fn):
        def go(d, st):
            p = os.path.join(d, "config.json")
            with open(p) as f:
                c = json.load(f)
            fn(c)
            with open(p, "w") as f:
                json.dump(c, f)
        return go

    corrupt("config key missing", edit_config(lambda c: c.pop("rope_theta")), "config.json", "rope_theta")
    corrupt("config impossible", edit_config(lambda c: c.update(suffix_len=9)), "config.json", "suffix_len")
    corrupt("config heads", edit_config(lambda c: c.update(num_attention_heads=5)), "num_attention_heads")
    corrupt("config not JSON", lambda d, st: open(os.path.join(d, "config.json"), "w").write("{oops"),
            "config.json", "invalid JSON")


@case
def bad_inputs(c):
    tmp = c.tmp
    tiny, tokens, token_file = c.tiny, c.tokens, c.token_file
    # Bad token files.
    def token_file(name, text):
        p = os.path.join(tmp, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    expect_error("token id >= vocab", "ttt-perplexity", ["-m", tiny, "--tokens", token_file("big.txt", "1 2 97 3")],
                 "big.txt", "97", "position 2", "0..96")
    expect_error("negative token id", "ttt-perplexity", ["-m", tiny, "--tokens", token_file("neg.txt", "1 -4 2")],
                 "neg.txt", "-4")
    expect_error("empty token file", "ttt-perplexity", ["-m", tiny, "--tokens", token_file("empty.txt", "\n \n")],
                 "empty.txt", "no token ids")
    expect_error("non-numeric token file", "ttt-perplexity",
                 ["-m", tiny, "--tokens", token_file("words.txt", "1 2\nthree 4")], "words.txt:2:1", "'three'")
    expect_error("one token", "ttt-perplexity", ["-m", tiny, "--tokens", token_file("one.txt", "5")], "at least 2")
    expect_error("missing token file", "ttt-perplexity", ["-m", tiny, "--tokens", os.path.join(tmp, "nope.txt")],
                 "nope.txt")
    expect_error("device matches nothing", "ttt-perplexity",
                 ["-m", tiny, "--tokens", tokens, "--device", "no-such-gpu"], "no-such-gpu",
                 "matches no OpenCL device", "0:0", code=2)
    expect_error("device index matches nothing", "ttt-perplexity", ["-m", tiny, "--tokens", tokens, "--device", "7:3"],
                 "7:3", "available devices", code=2)
    if os.path.exists("/etc/OpenCL/vendors/rusticl.icd") and not os.environ.get("RUSTICL_ENABLE"):
        expect_error("a device name matching nothing, with Mesa installed, names RUSTICL_ENABLE", "ttt-perplexity",
                     ["-m", tiny, "--tokens", tokens, "--device", "llvmpipe"], "RUSTICL_ENABLE=llvmpipe", code=2)
    expect_error("save weights without ttt", "ttt-perplexity",
                 ["-m", tiny, "--tokens", tokens, "--no-ttt", "--save-weights", os.path.join(tmp, "w")],
                 "--save-weights")


@case
def option_ranges(c):
    tmp = c.tmp
    tiny, tokens = c.tiny, c.tokens
    # Numeric options are range-checked: a usage error (exit 2) naming the flag, never a wrapped value.
    x = os.path.join(tmp, "x")
    for flag, tool, args in [
            ("--max-tokens", "ttt-perplexity", ["-m", tiny, "--tokens", tokens, "--max-tokens", "-5"]),
            ("--max-tokens", "ttt-perplexity", ["-m", tiny, "--tokens", tokens, "--max-tokens", "1"]),
            ("--inner-lr", "ttt-perplexity", ["-m", tiny, "--tokens", tokens, "--inner-lr", "-1"]),
            ("--inner-lr", "ttt-perplexity", ["-m", tiny, "--tokens", tokens, "--inner-lr", "nan"]),
            ("--inner-lr", "ttt-perplexity", ["-m", tiny, "--tokens", tokens, "--inner-lr", "inf"]),
            ("--seed", "ttt-make-model", ["--preset", "tiny", "--out", x, "--seed", "-1"]),
            ("--init-std", "ttt-make-model", ["--preset", "tiny", "--out", x, "--init-std", "nan"]),
            ("--W", "ttt-bench", ["attention", "--W", "0"]),
            ("--T", "ttt-bench", ["attention", "--T", "-3"]),
            ("--E", "ttt-bench", ["attention", "--E", "0"]),
            ("--pos", "ttt-bench", ["attention", "--pos", "-1"]),
            ("--repeat", "ttt-bench", ["attention", "--repeat", "0"]),
            ("--tokens", "ttt-bench", ["prefill", "--preset", "tiny", "--tokens", "-1"]),
            ("--seed", "ttt-bench", ["prefill", "--preset", "tiny", "--seed", "-1"])]:
        expect_error(f"{tool} {' '.join(args[-2:])} is a usage error", tool, args, flag, code=2)
    check("a rejected --seed wrote nothing", not os.path.exists(x))


@case
def output_paths(c):
    tmp = c.tmp
    tiny, tokens = c.tiny, c.tokens
    # Output paths are checked before any work: a missing directory fails at once, naming the flag.
    for flag in ["--json", "--plot", "--nll-out"]:
        rc, so, se = run("ttt-perplexity", "-m", tiny, "--tokens", tokens, flag, os.path.join(tmp, "nodir", "f"))
        check(f"{flag} into a missing directory fails before the evaluation",
              rc == 1 and se.startswith(f"ttt-perplexity: error: {flag} ") and "does not exist" in se
              and "tokens to score" not in se and so == "", se[-400:])
    expect_error("bench --json into a missing directory", "ttt-bench",
                 ["prefill", "--preset", "tiny", "--tokens", "100", "--json", os.path.join(tmp, "nodir", "b.json")],
                 "--json", "does not exist")
    rc, _, se = run("ttt-perplexity", "-m", tiny, "--tokens", tokens, "--json", tmp)
    check("--json naming a directory fails", rc == 1 and "is a directory" in se, se[-300:])
    expect_error("unknown preset", "ttt-make-model", ["--preset", "7b", "--out", os.path.join(tmp, "x")], "7b",
                 "125m")
    expect_error("unknown dtype flag", "ttt-make-model",
                 ["--preset", "tiny", "--out", os.path.join(tmp, "x"), "--dtype", "f8"], "f8")


@case
def golden(c):
    tmp = c.tmp
    # The golden cases through the CLI.
    for case in ["tiny", "partial-chunk", "bf16-weights", "medium"]:
        d = os.path.join(GOLDEN, case)
        toks = os.path.join(d, "tokens.txt")
        for mode, ref in [("ttt", "nll_ttt.txt"), ("no-ttt", "nll_no_ttt.txt")]:
            out = os.path.join(tmp, f"{case}-{mode}.txt")
            args = ["-m", d, "--tokens", toks, "--nll-out", out] + (["--no-ttt"] if mode == "no-ttt" else [])
            rc, so, se = run("ttt-perplexity", *args)
            got, want = (floats(out) if rc == 0 else []), floats(os.path.join(d, ref))
            diff = max((abs(a - b) for a, b in zip(got, want)), default=1e9)
            check(f"golden {case} {mode} via CLI (max diff {diff:.2e})",
                  rc == 0 and len(got) == len(want) and diff <= 1e-3, se[-400:])

    med = os.path.join(GOLDEN, "medium")
    mtoks = os.path.join(med, "tokens.txt")
    outs = []
    for i in range(2):
        p = os.path.join(tmp, f"det{i}.txt")
        run("ttt-perplexity", "-m", med, "--tokens", mtoks, "--nll-out", p)
        outs.append(open(p, "rb").read())
    check("two runs give byte-identical --nll-out", outs[0] == outs[1] and len(outs[0]) > 0)
    a, b = os.path.join(tmp, "lr0.txt"), os.path.join(tmp, "nottt.txt")
    run("ttt-perplexity", "-m", med, "--tokens", mtoks, "--inner-lr", "0", "--nll-out", a)
    run("ttt-perplexity", "-m", med, "--tokens", mtoks, "--no-ttt", "--nll-out", b)
    check("--inner-lr 0 equals --no-ttt byte for byte", open(a, "rb").read() == open(b, "rb").read())


@case
def bundled_model(c):
    # models/kjv-bytes (the README demo's model) on the first 4,096 bytes of held-out Genesis: the
    # engine reproduces the committed result for that document, and test-time training helps.
    root = os.path.dirname(os.path.dirname(os.path.abspath(DATA)))
    model = os.path.join(root, "models", "kjv-bytes")
    doc = os.path.join(c.tmp, "genesis-4k.txt")
    with open(os.path.join(root, "data", "genesis-kjv.txt"), "rb") as f, open(doc, "wb") as g:
        g.write(f.read(4096))
    report = os.path.join(c.tmp, "bundled.json")
    rc, so, se = run("ttt-perplexity", "-m", model, "-f", doc, "--compare", "--json", report, "-q")
    check("the bundled model scores a held-out document", rc == 0, se[-400:])
    if rc != 0:
        return
    got = json.load(open(report))["documents"][0]
    want = json.load(open(os.path.join(model, "results", "meta.json")))["documents"][0]
    for key, g, w in [("with TTT", got["mean_nll"], want["mean_nll"]),
                      ("without TTT", got["base"]["mean_nll"], want["base"]["mean_nll"])]:
        check(f"mean NLL {key} {g:.4f} is the committed {w:.4f} (models/kjv-bytes/results/meta.json)",
              abs(g - w) <= 1e-3)
    half = [b for b in got["buckets"] if b["lo"] == 2048][0]
    check(f"TTT lowers the second half's NLL ({half['mean_nll']:.3f} < {half['base']['mean_nll']:.3f})",
          half["mean_nll"] < half["base"]["mean_nll"] - 0.1)
    check("it is a trained byte model (NLL < 1.6 nats/byte, where chance is 5.5)", got["base"]["mean_nll"] < 1.6)


@case
def save_weights(c):
    tmp = c.tmp
    med, mtoks = c.med, c.mtoks
    saved = os.path.join(tmp, "adapted")
    rc, _, se = run("ttt-perplexity", "-m", med, "--tokens", mtoks, "--save-weights", saved)
    ok = rc == 0
    worst = 1.0
    if ok:
        h, data = read_st(os.path.join(saved, "model.safetensors"))
        gh, gdata = read_st(os.path.join(med, "prime_after.safetensors"))
        worst = 0.0
        for name in gh:
            if name == "__metadata__":
                continue
            x, y = tensor(h, data, name), tensor(gh, gdata, name)
            num = sum((p - q) ** 2 for p, q in zip(x, y))
            den = sum(q * q for q in y)
            worst = max(worst, (num / den) ** 0.5)
    check(f"--save-weights equals prime_after (rel L2 {worst:.1e})", ok and worst < 1e-4, se[-400:])
    rc, _, se = run("ttt-perplexity", "-m", saved, "--tokens", mtoks, "--no-ttt")
    check("the saved model directory loads and runs", rc == 0, se[-400:])
    with_tok = copy_model(med, os.path.join(tmp, "with-tokenizer"))
    with open(os.path.join(with_tok, "tokenizer.model"), "w") as f:
        f.write("placeholder: only copied, never read here\n")
    saved2 = os.path.join(tmp, "adapted2")
    rc, _, se = run("ttt-perplexity", "-m", with_tok, "--tokens", mtoks, "--save-weights", saved2)
    check("--save-weights takes the tokenizer along", rc == 0 and
          open(os.path.join(saved2, "tokenizer.model")).read().startswith("placeholder"), se[-400:])

    # --save-weights never writes over its input model (however spelt, --force or not) nor, without
    # --force, into a non-empty directory; it fails before the evaluation.
    victim = copy_model(med, os.path.join(tmp, "victim"))
    before = open(os.path.join(victim, "model.safetensors"), "rb").read()
    for spelling in [victim, victim + "/", os.path.join(victim, "..", "victim"), os.path.relpath(victim)]:
        for extra in [[], ["--force"]]:
            rc, _, se = run("ttt-perplexity", "-m", victim, "--tokens", mtoks, "--save-weights", spelling, *extra)
            check(f"--save-weights {spelling} {' '.join(extra)} refuses the input model",
                  rc == 2 and "input model" in se and "tokens to score" not in se, se[-300:])
    check("the input model is untouched", open(os.path.join(victim, "model.safetensors"), "rb").read() == before)
    rc, _, se = run("ttt-perplexity", "-m", med, "--tokens", mtoks, "--save-weights", saved)
    check("--save-weights refuses a non-empty directory", rc == 1 and "--force" in se and "not empty" in se,
          se[-300:])
    rc, _, se = run("ttt-perplexity", "-m", med, "--tokens", mtoks, "--save-weights", saved, "--force")
    check("--save-weights --force writes into it, leaving no temporary files",
          rc == 0 and sorted(os.listdir(saved)) == ["config.json", "model.safetensors"], se[-300:])

    jpath = os.path.join(tmp, "r.json")
    rc, so, se = run("ttt-perplexity", "-m", med, "--tokens", mtoks, "--json", jpath)
    ok = rc == 0 and "PPL = " in so
    if ok:
        j = json.load(open(jpath))
        ok = isinstance(j, dict) and len(json.dumps(j)) > 50
    check("--json writes JSON and stdout shows PPL", ok, se[-400:])


@case
def make_model(c):
    tmp = c.tmp
    token_file = c.token_file
    # ttt-make-model: every dtype loads and runs; ttt-info lists the device.
    for dt in ["f32", "f16", "bf16"]:
        d = os.path.join(tmp, f"make-{dt}")
        rc1, _, e1 = run("ttt-make-model", "--preset", "tiny", "--seed", "3", "--out", d, "--dtype", dt)
        toks = token_file(f"make-{dt}.txt", " ".join(str((i * 7) % 256) for i in range(300)))
        rc2, so, e2 = run("ttt-perplexity", "-m", d, "--tokens", toks)
        check(f"ttt-make-model tiny --dtype {dt} runs", rc1 == 0 and rc2 == 0 and "PPL = " in so, (e1 + e2)[-400:])
    made = os.path.join(tmp, "make-f32")
    rc, _, se = run("ttt-make-model", "--preset", "tiny", "--out", made)
    check("ttt-make-model refuses a non-empty --out", rc == 1 and "not empty" in se and "--force" in se, se[-300:])
    rc, _, se = run("ttt-make-model", "--preset", "tiny", "--seed", "3", "--out", made, "--force")
    check("ttt-make-model --force writes into it, leaving no temporary files",
          rc == 0 and sorted(os.listdir(made)) == ["config.json", "model.safetensors"], se[-300:])
    with open(os.path.join(made, "README.md"), "w") as f:
        f.write("a trained model\n")
    before = open(os.path.join(made, "model.safetensors"), "rb").read()
    rc, _, se = run("ttt-make-model", "--preset", "tiny", "--seed", "4", "--out", made, "--force")
    ok = rc == 1 and "README.md" in se and open(os.path.join(made, "model.safetensors"), "rb").read() == before
    check("ttt-make-model --force refuses a folder holding other files (names them), leaving it whole", ok, se[-300:])
    bj = os.path.join(tmp, "bench.json")
    rc, so, se = run("ttt-bench", "prefill", "--preset", "tiny", "--tokens", "100", "--json", bj)
    check("ttt-bench --json writes the JSON it prints",
          rc == 0 and os.path.exists(bj) and json.load(open(bj)) == json.loads(so), se[-300:])

    rc, so, _ = run("ttt-info")
    check("ttt-info lists a device", rc == 0 and "Device 0:0" in so, so[:300])


@case
def text_documents(c):
    tmp = c.tmp
    made = c.made()
    docs, texts = c.docs()
    # Text documents through the model's tokenizer (the tiny preset is byte-level).
    nll_path, jpath, svg = (os.path.join(tmp, x) for x in ("docs-nll.txt", "docs.json", "docs.svg"))
    rc, so, se = run("ttt-perplexity", "-m", made, "-f", docs, "--compare", "--json", jpath, "--plot", svg,
                     "--nll-out", nll_path)
    ok = rc == 0 and "a.txt" in so and "b.txt" in so and "total" in so and "no TTT" in so
    ok = ok and so.rstrip().splitlines()[-1].startswith("PPL = ")
    check("-f DIR: two documents, compare, text report", ok, (so + se)[-800:])
    n_bytes = sum(len(t.encode("utf-8")) for t in texts.values())  # byte tokenizer, no BOS: T-1 per document
    check("--nll-out holds T-1 lines per document", rc == 0 and len(floats(nll_path)) == n_bytes - 2)
    ok = False
    if rc == 0:
        j = json.load(open(jpath))
        ok = (len(j["documents"]) == 2 and j["documents"][0]["tokens"] == len(texts["a.txt"]) - 1
              and j["settings"]["device"] and j["settings"]["compare"] and "base" in j["total"]
              and j["buckets"] and j["buckets"][0]["label"] == "0-1K")
    check("--json has documents, buckets, settings, both runs", ok)
    ok = False
    if rc == 0:
        root = ET.parse(svg).getroot()
        ok = root.tag.endswith("svg") and "no TTT" in open(svg).read()
    check("--plot writes a well-formed SVG with both curves", ok)
    if rc == 0:
        check_plot_legend("--compare --plot", svg, tmp)

    a_only = os.path.join(docs, "a.txt")
    check("stdout holds the report alone; the header and progress go to stderr",
          rc == 0 and so.startswith("ttt-perplexity report\n") and "tokens to score" not in so
          and "progress" not in so and "tokens to score" in se, so[:300])


@case
def one_speed(c):
    tmp = c.tmp
    made, long_doc = c.made(), c.long_doc()
    # One run shows one speed: the progress line and the report agree (both count scoring time only).
    rc, so, se = run("ttt-perplexity", "-m", made, "-f", long_doc, "--max-tokens", "6000")
    prog = re.findall(r"progress: done, .* ([0-9.]+) tok/s", se)
    rep = re.findall(r"time .* TTT ([0-9.]+) tok/s", so)
    check(f"progress and report show one tok/s ({prog} vs {rep})",
          rc == 0 and len(prog) == 1 and len(rep) == 1 and abs(float(prog[0]) / float(rep[0]) - 1) < 0.002,
          (so + se)[-500:])


@case
def kernel_cache(c):
    tmp = c.tmp
    made, long_doc = c.made(), c.long_doc()
    # A cold kernel cache says so, where it caches, and keeps compilation out of the throughput.
    def scoring_seconds(out):
        m = re.search(r"time +([0-9.]+) s", out)
        return float(m.group(1)) if m else 1e9
    cold = {"TTT_CACHE_DIR": os.path.join(tmp, "kernels"), "POCL_CACHE_DIR": os.path.join(tmp, "pocl")}
    rc1, so1, se1 = run("ttt-perplexity", "-m", made, "-f", long_doc, "--max-tokens", "3000", env=cold)
    rc2, so2, se2 = run("ttt-perplexity", "-m", made, "-f", long_doc, "--max-tokens", "3000", env=cold)
    notice = "ttt-perplexity: compiling kernels for "
    check("a cold cache prints the compile notice naming the cache, once",
          rc1 == 0 and se1.count(notice) == 1 and f"cached in {cold['TTT_CACHE_DIR']})" in se1, se1[-500:])
    check("a warm cache prints no compile notice", rc2 == 0 and notice not in se2, se2[-300:])
    t1, t2 = scoring_seconds(so1), scoring_seconds(so2)
    check(f"throughput excludes compilation (cold {t1:.2f} s, warm {t2:.2f} s of scoring)",
          rc1 == rc2 == 0 and t1 <= 3 * t2 + 0.5, so1[:600])
    home = os.path.join(tmp, "xdg")
    rc, _, se = run("ttt-perplexity", "-m", made, "-f", long_doc, "--max-tokens", "200",
                    env={"TTT_CACHE_DIR": "", "XDG_CACHE_HOME": home})
    check("the default kernel cache is $XDG_CACHE_HOME/ttt-cl", rc == 0 and os.path.join(home, "ttt-cl") in se
          and os.listdir(os.path.join(home, "ttt-cl")), se[-300:])
    setup = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "setup.sh")).read()
    check("tools/setup.sh leaves the kernel cache at the tools' default",
          not re.search(r"export\s+(TTT|POCL)_CACHE_DIR", setup))


@case
def interrupts(c):
    tmp = c.tmp
    made, long_doc = c.made(), c.long_doc()
    docs, texts = c.docs()
    a_only = os.path.join(docs, "a.txt")
    # Interrupts: the current mini-batch ends, partial report, JSON, NLLs and plot are written, exit 128+signal.
    for sig, code in [(signal.SIGINT, 130), (signal.SIGTERM, 130)]:
        jp, npth, sp = (os.path.join(tmp, f"int-{sig}.{e}") for e in ("json", "txt", "svg"))
        p = subprocess.Popen([exe("ttt-perplexity"), "-m", made, "-f", long_doc, "-f", a_only, "--compare",
                              "--json", jp, "--nll-out", npth, "--plot", sp], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        head = p.stderr.readline()  # printed once the documents are loaded, before any scoring
        p.send_signal(sig)
        so, se = p.communicate(timeout=600)
        se = head + se
        ok = p.returncode == code and "INTERRUPTED" in so and so.rstrip().splitlines()[-1].startswith("PPL = ")
        ok = ok and "partial results written" in se
        j = json.load(open(jp)) if os.path.exists(jp) else {}
        lines = open(npth).read().splitlines() if os.path.exists(npth) else []
        n_scored = j.get("total", {}).get("tokens", 0)
        ok = ok and j.get("partial") is True and j["planned"]["tokens"] == 20250 - 1 + len(texts["a.txt"]) - 1
        ok = ok and 0 < n_scored < j["planned"]["tokens"] and n_scored % 64 == 0  # whole mini-batches of B = 64
        ok = ok and lines[0].startswith("# written by ttt-perplexity ") and lines[-1].startswith("# partial: ")
        ok = ok and len(lines) - 2 == n_scored  # one NLL a line between the two comments
        # Interrupted during the run with TTT: the report says that the comparison is missing.
        ok = ok and re.search(r"comparison +MISSING", so) and "MISSING" in j.get("settings", {}).get("extra", {}).get(
            "comparison", "")
        # ... and the JSON says which modes were asked for and which it holds (not a bare "compare": false).
        ok = ok and j["planned"].get("modes") == ["ttt", "swa"] and j["planned"].get("modes_scored") == ["ttt"]
        ok = ok and os.path.exists(sp) and ET.parse(sp).getroot().tag.endswith("svg")
        check(f"{signal.Signals(sig).name}: partial report, JSON, NLLs and plot, exit {code} "
              f"({n_scored} tokens)", ok, f"exit {p.returncode}; {(so + se)[-600:]}")


@case
def interrupt_parallel(c):
    """Ctrl-C with --parallel stops after the current step of the batch: every document in flight is cut there and
    reported partial (exit 130), not scored to its end (the interrupt used to wait for the longest document, and
    with fewer documents than --parallel slots it was ignored: exit 0 after the whole run)."""
    made, long_doc = c.made(), c.long_doc()
    docs, texts = c.docs()
    a_only = os.path.join(docs, "a.txt")
    jp, npth = (os.path.join(c.tmp, f"int-par.{e}") for e in ("json", "nll"))
    for parallel in ("2", "3"):
        for f in (jp, npth):
            if os.path.exists(f):
                os.remove(f)
        p = subprocess.Popen([exe("ttt-perplexity"), "-m", made, "-f", long_doc, "-f", a_only, "--parallel", parallel,
                              "--json", jp, "--nll-out", npth], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        head = p.stderr.readline()  # printed once the documents are loaded, before any scoring
        p.send_signal(signal.SIGINT)
        so, se = p.communicate(timeout=600)
        se = head + se
        j = json.load(open(jp)) if os.path.exists(jp) else {}
        lines = open(npth).read().splitlines() if os.path.exists(npth) else [""]
        long_scored = next((d["tokens"] for d in j.get("documents", []) if d["name"].endswith("long.txt")), None)
        n_scored = j.get("total", {}).get("tokens", 0)
        ok = p.returncode == 130 and "INTERRUPTED" in so and j.get("partial") is True
        ok = ok and long_scored is not None and 0 < long_scored < 20250 - 1 and long_scored % 64 == 0
        ok = ok and 0 < n_scored < j["planned"]["tokens"] and lines[-1].startswith("# partial: ")
        check(f"--parallel {parallel}: Ctrl-C cuts the documents in flight (long document: {long_scored} of 20249 "
              f"tokens), partial results, exit 130", ok, f"exit {p.returncode}; {(so + se)[-600:]}")


@case
def generate_interrupt_prefill(c):
    """Ctrl-C during ttt-generate's prefill: the summary and the JSON count the prompt tokens read, not the whole
    prompt (the rate was the whole prompt's over the time of a part), and --save-session writes no session of part
    of the prompt (it used to, silently: loading it continued a document the user never gave)."""
    made, long_doc = c.made(), c.long_doc()
    jp, ses = os.path.join(c.tmp, "gen-int.json"), os.path.join(c.tmp, "gen-int.ses")
    # The header is printed before the engine is set up: an interrupt that lands before the prefill starts
    # ends the run with nothing to report (exit 130, no JSON, no session). On a loaded machine that happens;
    # wait a little longer after the header each time until one lands in the prefill.
    for delay in (0, 0.05, 0.1, 0.2, 0.4, 0.8):
        for f in (jp, ses):
            if os.path.exists(f):
                os.remove(f)
        p = subprocess.Popen([exe("ttt-generate"), "-m", made, "-f", long_doc, "-n", "5", "--json", jp,
                              "--save-session", ses], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        head = p.stderr.readline()  # the header line, printed before the prefill
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, se = p.communicate(timeout=600)
        se = head + se
        if os.path.exists(jp):
            break
        check(f"ttt-generate: Ctrl-C before the prefill ({delay} s after the header) exits 130 with no session",
              p.returncode == 130 and not os.path.exists(ses), f"exit {p.returncode}; {se[-600:]}")
    j = json.load(open(jp)) if os.path.exists(jp) else {}
    read, whole = j.get("prompt_tokens_read", -1), j.get("prompt_tokens", 0)
    ok = p.returncode == 130 and j.get("stopped") == "interrupt" and whole == 20250 and 0 <= read < whole
    ok = ok and f"prompt {read} of {whole} tokens" in se
    ok = ok and not os.path.exists(ses) and "--save-session not written" in se
    check(f"ttt-generate: Ctrl-C in the prefill ({read} of {whole} prompt tokens read): counted as read, no session",
          ok, f"exit {p.returncode}, session written: {os.path.exists(ses)}; {se[-600:]}")


@case
def interrupt_keeps_complete(c):
    """An interrupted re-run replaces no complete output: its partial results go to PATH.partial."""
    tmp = c.tmp
    made, long_doc = c.made(), c.long_doc()
    jp, npth = os.path.join(tmp, "keep.json"), os.path.join(tmp, "keep.nll")
    rc, _, err = run("ttt-perplexity", "-m", made, "-f", long_doc, "--json", jp, "--nll-out", npth)
    before = {p: open(p).read() for p in (jp, npth)} if rc == 0 else {}
    check("keep: the complete run writes its outputs", rc == 0 and not json.loads(before[jp]).get("partial"), err[-300:])
    p = subprocess.Popen([exe("ttt-perplexity"), "-m", made, "-f", long_doc, "--json", jp, "--nll-out", npth],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    head = p.stderr.readline()
    p.send_signal(signal.SIGINT)
    _, se = p.communicate(timeout=600)
    se = head + se
    kept = all(open(f).read() == t for f, t in before.items())
    pj = json.load(open(jp + ".partial")) if os.path.exists(jp + ".partial") else {}
    pn = open(npth + ".partial").read().splitlines() if os.path.exists(npth + ".partial") else [""]
    ok = p.returncode == 130 and kept and pj.get("partial") is True and pn[-1].startswith("# partial: ")
    ok = ok and f"{jp} kept" in se and f"{jp}.partial" in se
    check("keep: an interrupted re-run leaves the complete JSON and NLLs, partial results beside them", ok,
          f"exit {p.returncode}, kept {kept}, {se[-500:]!r}")
    # PATH.partial is an output too: checked before any work.
    bad = os.path.join(tmp, "keep2.json")
    os.mkdir(bad + ".partial")
    expect_error("keep: PATH.partial that cannot be written is refused before work", "ttt-perplexity",
                 ["-m", made, "-f", long_doc, "--json", bad], "keep2.json.partial", code=1)
    # "-" is no file name for an output (stdout carries the report): a usage error, no file named "-".
    for flag in ("--json", "--nll-out", "--plot"):
        expect_error(f"keep: {flag} - is a usage error", "ttt-perplexity", ["-m", made, "-f", long_doc, flag, "-"],
                     f"{flag} -", code=2)
    check("keep: no file named '-' was made", not os.path.exists("-"))


@case
def tokenize_positional(c):
    """ttt-tokenize takes its input file as a positional argument too; -f and a positional file together are refused."""
    made, tmp = c.made(), c.tmp
    hw = c.token_file("tok-hw.txt", "hi")
    rc, so, se = run("ttt-tokenize", "-m", made, hw, stdin="abc")
    check("ttt-tokenize FILE reads the file, not standard input", rc == 0 and so.split() == ["104", "105"], so + se)
    expect_error("ttt-tokenize -f FILE OTHER is a usage error", "ttt-tokenize", ["-m", made, "-f", hw, hw], code=2)


@case
def usage_codes(c):
    """Writing onto the input model is a usage error (exit 2), named before any work."""
    made, tmp = c.made(), c.tmp
    a = c.token_file("uc.txt", "In the beginning.")
    expect_error("--save-weights onto the input model's folder: exit 2", "ttt-perplexity",
                 ["-m", made, "-f", a, "--save-weights", made, "--force"], "--save-weights", code=2)
    expect_error("ttt-train --resume DIR --out DIR: exit 2", "ttt-train", ["--resume", made, "--out", made], "--out",
                 "--resume", code=2)


@case
def clblast_compile_notice(c):
    """A first CLBlast call that runs long (its kernels compiling on a cold cache) says so on stderr; warm runs with the
    default threshold (5 s) stay quiet. TTT_SLOW_NOTICE_S=0 makes every first call say it, deterministically."""
    made = c.made()
    a = c.token_file("cn.txt", "In the beginning was the word. " * 20)
    rc, _, se = run("ttt-perplexity", "-m", made, "-f", a, "-q", env={"TTT_SLOW_NOTICE_S": "0"})
    check("a first CLBlast call past the threshold names itself on stderr",
          rc == 0 and "compiling CLBlast kernels (first run only" in se and "clblast::Gemm" in se, se[-400:])
    rc, _, se = run("ttt-perplexity", "-m", made, "-f", a, "-q")
    check("a warm run says nothing of it", rc == 0 and "compiling CLBlast" not in se, se[-400:])


@case
def folder_skips_outputs(c):
    """-f DIR takes the documents of a folder, not the tools' outputs written there; -f - reads stdin once."""
    made, tmp = c.made(), c.tmp
    d = os.path.join(tmp, "fold")
    os.mkdir(d)
    with open(os.path.join(d, "a.txt"), "w") as f:
        f.write("In the beginning was the word. " * 4)
    rc1, _, e1 = run("ttt-perplexity", "-m", made, "-f", d, "--nll-out", os.path.join(d, "out.nll"), "--json",
                     os.path.join(d, "rep.json"))
    rc2, so, e2 = run("ttt-perplexity", "-m", made, "-f", d, "--json", os.path.join(tmp, "fold2.json"))
    j = json.load(open(os.path.join(tmp, "fold2.json"))) if rc2 == 0 else {}
    names = [os.path.basename(x.get("name", "")) for x in j.get("documents", [])]
    ok = rc1 == rc2 == 0 and names == ["a.txt"] and "skipped" in e2 and "out.nll" in e2 and "rep.json" in e2
    check("-f DIR skips the .nll and .json outputs of an earlier run, and says so", ok, f"{names} {(e1 + e2)[-400:]!r}")
    expect_error("-f - twice is a usage error", "ttt-perplexity", ["-m", made, "-f", "-", "-f", "-"], "-f -", code=2)


@case
def input_forms(c):
    tmp = c.tmp
    tiny, made = c.tiny, c.made()
    docs, texts = c.docs()
    a_only = os.path.join(docs, "a.txt")
    rc1, so1, _ = run("ttt-perplexity", "-m", made, "-f", a_only, "--nll-out", os.path.join(tmp, "fa.txt"))
    ids = os.path.join(tmp, "a-ids.txt")
    with open(ids, "w") as f:
        f.write(" ".join(str(b) for b in texts["a.txt"].encode()))
    rc2, so2, _ = run("ttt-perplexity", "-m", made, "--tokens", ids, "--nll-out", os.path.join(tmp, "ta.txt"))
    npy = os.path.join(tmp, "a.npy")
    data = texts["a.txt"].encode()
    hdr = "{'descr': '<u2', 'fortran_order': False, 'shape': (%d,), }" % len(data)
    hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
    with open(npy, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + struct.pack(f"<{len(data)}H", *data))
    rc3, so3, se3 = run("ttt-perplexity", "-m", made, "--tokens", npy, "--nll-out", os.path.join(tmp, "na.txt"))
    same = rc1 == rc2 == rc3 == 0 and (open(os.path.join(tmp, "fa.txt")).read() == open(os.path.join(tmp, "ta.txt")).read()
                                        == open(os.path.join(tmp, "na.txt")).read())
    check("text, id and .npy forms of one document give identical NLLs", same, se3[-400:])

    empty_dir = os.path.join(tmp, "emptydoc")
    os.makedirs(empty_dir)
    open(os.path.join(empty_dir, "blank.txt"), "w").close()
    expect_error("empty text document", "ttt-perplexity", ["-m", made, "-f", os.path.join(empty_dir, "blank.txt")],
                 "blank.txt", "empty document")
    notok = copy_model(tiny, os.path.join(tmp, "no-tokenizer"))
    expect_error("text without a tokenizer", "ttt-perplexity", ["-m", notok, "-f", a_only], "tokenizer.json",
                 "tokenizer.model")
    expect_error("both -f and --tokens", "ttt-perplexity", ["-m", made, "-f", a_only, "--tokens", ids], "one of")
    expect_error("missing text file", "ttt-perplexity", ["-m", made, "-f", os.path.join(tmp, "gone.txt")],
                 "gone.txt", "no such file")
    expect_error("compare with no-ttt", "ttt-perplexity", ["-m", made, "-f", a_only, "--compare", "--no-ttt"],
                 "--compare")


@case
def generate(c):
    generate_tests(c.tmp)

def train_fixture(fixtures):
    """A byte-level config small enough for the double-precision reference (D 16, 2 blocks, W = B = 8),
    training and held-out text. (Not a case: those are the functions of one argument named c.)"""
    d = os.path.join(fixtures.tmp, "train-in")
    if not os.path.exists(d):
        os.makedirs(d)
        cfg = {"format": "ttt-e2e", "format_version": 1, "vocab_size": 256, "hidden_size": 16, "num_hidden_layers": 2,
               "num_attention_heads": 2, "intermediate_size": 32, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
               "tie_word_embeddings": True, "qk_norm": True, "pre_norm": True, "post_norm": True,
               "sliding_window_size": 8, "mini_batch_size": 8, "suffix_len": 1, "prime": True, "inner_lr": 1.0,
               "inner_clip_gradient": 1.0, "bos_token_id": -1, "eos_token_id": -1, "tokenizer": "bytes"}
        with open(os.path.join(d, "micro.json"), "w") as f:
            json.dump(cfg, f)
        with open(os.path.join(d, "train.txt"), "w") as f:
            f.write("The quick brown fox jumps over the lazy dog. " * 30)
        with open(os.path.join(d, "eval.txt"), "w") as f:
            f.write("A lazy dog sleeps under the quick brown fox. " * 3)
    return {k: os.path.join(d, v) for k, v in [("config", "micro.json"), ("data", "train.txt"), ("eval", "eval.txt")]}


def train_args(f, out, *extra, mode="pretrain", steps=3):
    return ["--data", f["data"], "--config", f["config"], "--mode", mode, "--steps", str(steps), "--seq-len", "16",
            "--batch", "2", "--lr", "0.01", "--out", out, "--quiet", *extra]


def jsonl(path):
    with open(path) as fh:
        return [json.loads(l) for l in fh if l.strip()]


@case
def train_usage(c):
    f, tmp = train_fixture(c), c.tmp
    rc, out, _ = run("ttt-train", "--help")
    flags = ["--data", "--preset", "--config", "--mode", "--steps", "--out", "--resume", "--until", "--batch",
             "--seq-len", "--lr", "--end-lr", "--warmup", "--weight-decay", "--clip", "--ilr-init", "--ilr-warmup",
             "--seed", "--eval-every", "--eval-data", "--checkpoint-every", "--gradient", "--device", "--threads",
             "--force", "--quiet"]
    check("ttt-train --help explains every flag", rc == 0 and all(x in out for x in flags), out[:300])
    o = os.path.join(tmp, "t-bad")
    expect_error("ttt-train missing data file", "ttt-train",
                 ["--data", os.path.join(tmp, "gone.txt")] + train_args(f, o)[2:],
                 "--data", "gone.txt", code=2)
    short = c.token_file("short.txt", "0123456789")
    expect_error("ttt-train data shorter than one document", "ttt-train",
                 ["--data", short] + train_args(f, o)[2:], "--data", "17 bytes", code=2)
    expect_error("ttt-train --steps 0", "ttt-train", train_args(f, o, steps=0), "--steps", code=2)
    expect_error("ttt-train --lr nan", "ttt-train", train_args(f, o, "--lr", "nan"), "--lr", code=2)
    expect_error("ttt-train unknown mode", "ttt-train", train_args(f, o, mode="sgd"), "--mode", code=2)
    expect_error("ttt-train without --out", "ttt-train", train_args(f, o)[:-3], "--out", code=2)
    expect_error("ttt-train missing config", "ttt-train",
                 train_args(f, o)[:2] + ["--config", os.path.join(tmp, "nope.json")] + train_args(f, o)[4:],
                 "--config", "nope.json", code=2)
    expect_error("ttt-train --eval-every without --eval-data", "ttt-train", train_args(f, o, "--eval-every", "1"),
                 "--eval-data", code=2)
    expect_error("ttt-train a non-byte model", "ttt-train",
                 train_args(f, o)[:2] + ["--preset", "125m"] + train_args(f, o)[4:], "--preset 125m", "bytes", code=2)
    expect_error("ttt-train an unknown preset", "ttt-train",
                 train_args(f, o)[:2] + ["--preset", "nosuch"] + train_args(f, o)[4:], "--preset", "nosuch", code=2)
    full = os.path.join(tmp, "t-full")
    os.makedirs(full)
    open(os.path.join(full, "x"), "w").close()
    expect_error("ttt-train non-empty --out", "ttt-train", train_args(f, full), "--out", "--force")
    rc, _, err = run("ttt-train", *train_args(f, o, steps=1))
    check("ttt-train one step", rc == 0, err[-400:])
    expect_error("ttt-train --resume into its own directory", "ttt-train", ["--resume", o, "--out", o, "--force"],
                 "--out")
    expect_error("ttt-train --resume with a run setting", "ttt-train",
                 ["--resume", o, "--out", os.path.join(tmp, "t-res"), "--lr", "0.5"], "--lr", "checkpoint", code=2)
    expect_error("ttt-train --resume with other --steps", "ttt-train",
                 ["--resume", o, "--out", os.path.join(tmp, "t-res"), "--steps", "9"], "--steps", code=2)
    expect_error("ttt-train --resume of a finished run", "ttt-train",
                 ["--resume", o, "--out", os.path.join(tmp, "t-res"), "--until", "1"], "run is complete",
                 "nothing to resume", code=2)
    expect_error("ttt-train --resume of a model without optimiser state", "ttt-train",
                 ["--resume", c.tiny, "--out", os.path.join(tmp, "t-res")], "trainer.json")
    # A document of one mini-batch (B 8): its only test-time step is followed by nothing to score.
    rc, _, err = run("ttt-train", *[a if a != "16" else "8" for a in
                                    train_args(f, os.path.join(tmp, "t-b8"), mode="meta", steps=1)])
    check("ttt-train --mode meta --seq-len B warns that there is nothing to learn through",
          rc == 0 and "not longer than a mini-batch (8)" in err, err[-400:])


@case
def train_pretrain(c):
    """3 pretraining steps write a checkpoint that ttt-perplexity reads, and the log."""
    f, tmp = train_fixture(c), c.tmp
    out = os.path.join(tmp, "t-pre")
    rc, _, err = run("ttt-train", *train_args(f, out, "--eval-data", f["eval"], "--eval-every", "2"))
    check("ttt-train pretrain 3 steps", rc == 0, err[-600:])
    if rc != 0:
        return
    log = jsonl(os.path.join(out, "train.jsonl"))
    steps = [r for r in log if "loss" in r]
    evals = [r for r in log if "eval_nll_ttt" in r]
    ok = [r["step"] for r in steps] == [1, 2, 3] and all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in steps)
    ok = ok and [r["step"] for r in evals] == [2, 3] and all(r["eval_tokens"] > 0 for r in evals)
    check("ttt-train logs each step and each evaluation in train.jsonl", ok, str(log)[:600])
    with open(os.path.join(out, "trainer.json")) as fh:
        tj = json.load(fh)
    check("ttt-train checkpoint records the step and settings",
          tj["step"] == 3 and tj["settings"]["mode"] == "pretrain" and tj["settings"]["batch"] == 2, str(tj)[:300])
    nll = os.path.join(tmp, "t-pre-nll.txt")
    rc, _, err = run("ttt-perplexity", "-m", out, "-f", f["eval"], "--no-ttt", "-q", "--nll-out", nll)
    ok = rc == 0 and len(floats(nll)) == os.path.getsize(f["eval"]) - 1
    check("ttt-perplexity reads the trained model", ok, err[-400:])
    if ok:
        # The reference's held-out number (eval_nll_no_ttt, on documents of 17 bytes) is not ttt-perplexity's (one
        # document of the whole file), but both must be the loss of a model near uniform over 256 bytes.
        mean = sum(floats(nll)) / len(floats(nll))
        check("held-out NLLs are plausible", abs(mean - math.log(256)) < 1 and abs(evals[-1]["eval_nll_no_ttt"] - math.log(256)) < 1,
              f"{mean} {evals[-1]}")


@case
def train_device(c):
    """--gradient device (the engine's float32 gradients) takes the steps the reference takes, in pretrain, meta
    and meta-fo (with the inner learning-rate warm-up running): the same losses to float accuracy, and the weights
    after three AdamW steps within a small distance; what it cannot do yet (meta with two prime blocks) is a
    usage error."""
    f, tmp = train_fixture(c), c.tmp
    for mode in ("pretrain", "meta", "meta-fo"):
        ref_out, dev_out = os.path.join(tmp, f"t-ref-{mode}"), os.path.join(tmp, f"t-dev-{mode}")
        extra = ["--ilr-warmup", "2", "--warmup", "1"]
        rc1, _, e1 = run("ttt-train", *train_args(f, ref_out, "--threads", "1", *extra, mode=mode))
        rc2, _, e2 = run("ttt-train", *train_args(f, dev_out, "--gradient", "device", *extra, mode=mode))
        check(f"ttt-train --mode {mode} --gradient reference and device", rc1 == rc2 == 0, (e1 + e2)[-600:])
        if rc1 or rc2:
            continue
        lr = [r["loss"] for r in jsonl(os.path.join(ref_out, "train.jsonl")) if "loss" in r]
        ld = [r["loss"] for r in jsonl(os.path.join(dev_out, "train.jsonl")) if "loss" in r]
        check(f"{mode}: device losses equal the reference's to 1e-5", len(lr) == len(ld) == 3 and
              all(abs(a - b) <= 1e-5 * abs(a) for a, b in zip(lr, ld)), f"{lr} {ld}")
        (hr, dr), (hd, dd) = (read_st(os.path.join(d, "model.safetensors")) for d in (ref_out, dev_out))
        names = [k for k in hr if k != "__metadata__"]
        wr, wd = ({k: tensor(h, d, k) for k in names} for h, d in ((hr, dr), (hd, dd)))
        num = sum((a - b) ** 2 for k in names for a, b in zip(wr[k], wd[k]))
        den = sum(a * a for k in names for a in wr[k])
        check(f"{mode}: device-trained weights within 1e-3 (relative L2) of the reference's",
              set(hr) == set(hd) and math.sqrt(num / den) < 1e-3, f"{math.sqrt(num / den)}")
    o = os.path.join(tmp, "t-dev-bad")
    two = os.path.join(tmp, "train-in", "two-prime.json")
    with open(f["config"]) as fh, open(two, "w") as out:
        json.dump(dict(json.load(fh), suffix_len=2), out)
    expect_error("ttt-train --gradient device --mode meta with two prime blocks", "ttt-train",
                 train_args(dict(f, config=two), o, "--gradient", "device", mode="meta"), "--gradient device",
                 "suffix_len 2", code=2)
    expect_error("ttt-train --gradient gpu", "ttt-train", train_args(f, o, "--gradient", "gpu"), "--gradient gpu",
                 code=2)
    expect_error("ttt-train --device without --gradient device", "ttt-train", train_args(f, o, "--device", "0:0"),
                 "--device", code=2)
    expect_error("ttt-train --gradient device on a device that is not there", "ttt-train",
                 train_args(f, o, "--gradient", "device", "--device", "no-such-device"), "no-such-device")
    check("a failed start leaves no output directory", not os.path.exists(o), o)


@case
def train_resume(c):
    """k steps, checkpoint, --resume, N - k steps == N steps straight, bit for bit (meta mode, with the inner
    learning-rate warm-up running across the break)."""
    f, tmp = train_fixture(c), c.tmp
    extra = ["--ilr-warmup", "3", "--warmup", "1", "--threads", "2"]
    straight, part, rest = (os.path.join(tmp, n) for n in ("t-straight", "t-part", "t-rest"))
    rc1, _, e1 = run("ttt-train", *train_args(f, straight, *extra, mode="meta", steps=4))
    rc2, _, e2 = run("ttt-train", *train_args(f, part, *extra, "--until", "2", mode="meta", steps=4))
    rc3, _, e3 = run("ttt-train", "--resume", part, "--out", rest, "--quiet", "--threads", "1")
    check("ttt-train straight, --until and --resume runs", rc1 == rc2 == rc3 == 0, (e1 + e2 + e3)[-600:])
    if rc1 or rc2 or rc3:
        return
    same = all(open(os.path.join(straight, n), "rb").read() == open(os.path.join(rest, n), "rb").read()
               for n in ("model.safetensors", "optimizer.safetensors"))
    check("resumed run equals the straight run exactly (weights and optimiser state)", same)
    a, b = jsonl(os.path.join(straight, "train.jsonl")), jsonl(os.path.join(rest, "train.jsonl"))
    check("the resumed log continues the checkpoint's", [r["step"] for r in b] == [1, 2, 3, 4] and
          [r["loss"] for r in a] == [r["loss"] for r in b] and [r["inner_lr"] for r in b][:3] != [1.0] * 3, str(b)[:400])


@case
def train_diverge(c):
    """A non-finite gradient stops the run with an error, and the last good state is kept as a checkpoint."""
    f, tmp = train_fixture(c), c.tmp
    out = os.path.join(tmp, "t-nan")
    args = ["--data", f["data"], "--config", f["config"], "--mode", "pretrain", "--steps", "40", "--seq-len", "16",
            "--batch", "2", "--lr", "1e12", "--clip", "0", "--warmup", "0", "--out", out, "--quiet"]
    rc, _, err = run("ttt-train", *args)
    m = re.search(r"non-finite [a-z ]+ step (\d+).*checkpoint of step (\d+) written", err)
    check("a diverging run stops with an error naming the step", rc == 1 and m is not None, f"rc {rc}: {err[-400:]}")
    if m:
        bad, kept = int(m.group(1)), int(m.group(2))
        record = json.load(open(os.path.join(out, "trainer.json")))
        check(f"its checkpoint holds the last good step ({kept} = {bad} - 1)",
              kept == bad - 1 and record["step"] == kept and record["step"] < 40)
        rc, so, se = run("ttt-perplexity", "-m", out, "--tokens", c.token_file("few.txt", "1 2 3 4 5"), "--no-ttt")
        check("the kept weights load as a model", rc == 0, se[-300:])


def interrupt_train(args, timeout):
    """Runs ttt-train with args, sends SIGINT once it has logged step 1, and waits: (the process, all its stderr)."""
    proc = subprocess.Popen([exe("ttt-train"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    for line in proc.stderr:
        seen += line
        if "step 1/" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=timeout)
    return proc, seen + err


@case
def train_interrupt(c):
    """SIGINT: the step in flight finishes, a checkpoint is written, exit 130; --resume continues it."""
    f, tmp = train_fixture(c), c.tmp
    out = os.path.join(tmp, "t-int")
    args = train_args(f, out, steps=100000)
    args.remove("--quiet")
    proc, err = interrupt_train(args, timeout=120)
    try:
        with open(os.path.join(out, "trainer.json")) as fh:
            step = json.load(fh)["step"]
    except (OSError, ValueError, KeyError) as e:
        step = repr(e)
    ok = proc.returncode == 130 and isinstance(step, int) and step >= 1 and "--resume" in err
    check("ttt-train on SIGINT writes a checkpoint and exits 130", ok, f"exit {proc.returncode}, step {step}, {err[-400:]!r}")
    if not ok:
        return
    more = os.path.join(tmp, "t-int-more")
    rc, _, err = run("ttt-train", "--resume", out, "--out", more, "--until", str(step + 1), "--quiet")
    with open(os.path.join(more, "trainer.json")) as fh:
        tj = json.load(fh)
    check("ttt-train resumes an interrupted run", rc == 0 and tj["step"] == step + 1, err[-400:])


def version_of_project():
    cm = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "CMakeLists.txt")).read()
    return re.search(r"project\(ttt-cl VERSION ([0-9.]+)", cm).group(1)


def untouched(path, text):
    with open(path) as f:
        return f.read() == text


# A directory no one can write in, root included (root's access() says yes to any mode bit).
UNWRITABLE = "/sys"


@case
def outputs_never_replace_inputs(c):
    """Every tool: an output that is an input or another output is a usage error naming both flags, the
    files untouched; an output that cannot be written fails before any work, naming the path and why."""
    tmp, made = c.tmp, c.made()
    docs, texts = c.docs()
    victim = c.token_file("victim.txt", texts["a.txt"])
    rc, so, se = run("ttt-perplexity", "-m", made, "-f", victim, "--nll-out", victim)
    check("ttt-perplexity -f X --nll-out X is refused, the input untouched",
          rc == 2 and "--nll-out" in se and "-f" in se and untouched(victim, texts["a.txt"]), se[-300:])
    os.makedirs(os.path.join(tmp, "sub"), exist_ok=True)
    link = os.path.join(tmp, "victim-link.txt")
    os.symlink(victim, link)
    for spelling in [os.path.join(tmp, "sub", "..", "victim.txt"), link]:
        rc, _, se = run("ttt-perplexity", "-m", made, "-f", victim, "--json", spelling)
        check(f"ttt-perplexity: the same file through {'..' if '..' in spelling else 'a link'} is refused",
              rc == 2 and "--json" in se and untouched(victim, texts["a.txt"]), se[-300:])
    toks = c.token_file("clash-ids.txt", "1 2 3 4 5 6")
    rc, _, se = run("ttt-perplexity", "-m", made, "--tokens", toks, "--plot", toks)
    check("ttt-perplexity --tokens X --plot X is refused", rc == 2 and "--tokens" in se and "--plot" in se
          and untouched(toks, "1 2 3 4 5 6"), se[-300:])
    x = os.path.join(tmp, "x.out")
    rc, _, se = run("ttt-perplexity", "-m", made, "--tokens", toks, "--json", x, "--plot", x)
    check("ttt-perplexity --json X --plot X is refused naming both", rc == 2 and "--json" in se and "--plot" in se
          and "same file" in se and not os.path.exists(x), se[-300:])
    cfg = os.path.join(made, "config.json")
    before = open(cfg).read()
    rc, _, se = run("ttt-perplexity", "-m", made, "--tokens", toks, "--nll-out", cfg)
    check("ttt-perplexity --nll-out onto the model's config.json is refused", rc == 2 and untouched(cfg, before),
          se[-300:])
    bad = os.path.join(UNWRITABLE, "x.nll")
    rc, so, se = run("ttt-perplexity", "-m", made, "-f", victim, "--nll-out", bad)
    check("ttt-perplexity --nll-out in an unwritable directory fails before scoring, with the reason",
          rc == 1 and bad in se and "tokens to score" not in se and so == "" and ": " in se.split(bad, 1)[1],
          se[-300:])

    # ttt-generate: --json is checked before generating, and is never the prompt file.
    rc, so, se = run("ttt-generate", "-m", made, "-p", "A", "-n", "3", "--json", "/nonexistent/dir/g.json")
    check("ttt-generate --json into a missing directory fails before generating",
          rc == 1 and so == "" and "/nonexistent/dir/g.json" in se and "does not exist" in se
          and "prompt tokens" not in se, se[-300:])
    prompt = c.token_file("prompt.txt", "A prompt.")
    rc, so, se = run("ttt-generate", "-m", made, "-f", prompt, "-n", "3", "--json", prompt)
    check("ttt-generate -f X --json X is refused", rc == 2 and "-f" in se and "--json" in se and so == ""
          and untouched(prompt, "A prompt."), se[-300:])

    # ttt-tokenize: -o is never its -f.
    rc, _, se = run("ttt-tokenize", "-m", made, "-f", prompt, "-o", prompt)
    check("ttt-tokenize -f X -o X is refused", rc == 2 and "-o" in se and untouched(prompt, "A prompt."), se[-300:])
    rc, _, se = run("ttt-tokenize", "-m", made, "-f", prompt, "-o", os.path.join(UNWRITABLE, "ids.txt"))
    check("ttt-tokenize -o in an unwritable directory names it", rc == 1 and "/ids.txt" in se, se[-300:])

    # ttt-make-model: an --out that cannot be made fails before the initialisation.
    rc, _, se = run("ttt-make-model", "--preset", "tiny", "--out", os.path.join(UNWRITABLE, "m"))
    check("ttt-make-model --out in an unwritable place fails before initialising",
          rc == 1 and os.path.join(UNWRITABLE, "m") in se and "initialising" not in se, se[-300:])

    # ttt-train: with --force, --out would replace a data file of that name.
    f = train_fixture(c)
    out = os.path.join(tmp, "t-clash")
    os.makedirs(out, exist_ok=True)
    data = os.path.join(out, "train.jsonl")
    shutil.copy(f["data"], data)
    text = open(data).read()
    args = train_args(f, out, "--force")
    args[args.index("--data") + 1] = data
    rc, _, se = run("ttt-train", *args)
    check("ttt-train --data OUT/train.jsonl --out OUT --force is refused, the data untouched",
          rc == 2 and "--data" in se and "--out" in se and untouched(data, text), se[-300:])

    # ttt-bench: every subcommand checks its outputs first.
    j = os.path.join(tmp, "dec.out")
    rc, so, se = run("ttt-bench", "decode", "--preset", "tiny", "--contexts", "64", "--json", j, "--plot", j)
    check("ttt-bench decode --json X --plot X is refused before the sweep",
          rc == 2 and "--json" in se and "--plot" in se and so == "", se[-300:])
    bad = os.path.join(UNWRITABLE, "tune.json")
    rc, so, se = run("ttt-bench", "tune", "--preset", "tiny", "--no-tuners", "--out", bad)
    check("ttt-bench tune --out in an unwritable directory fails at once, naming it and why",
          rc == 1 and bad in se and ".tmp" not in se and so == "", se[-300:])
    notes = c.token_file("tune-notes.txt", "my notes\n")
    rc, so, se = run("ttt-bench", "tune", "--preset", "tiny", "--no-tuners", "--out", notes)
    check("ttt-bench tune --out onto a file that is not a tuning file is refused, untouched",
          rc == 1 and "not a ttt-cl tuning file" in se and untouched(notes, "my notes\n") and so == "", se[-300:])
    m2 = copy_model(c.tiny, os.path.join(tmp, "bench-model"))
    cfg2 = os.path.join(m2, "config.json")
    before = open(cfg2).read()
    for sub in (["prefill", "--tokens", "10"], ["train"]):
        rc, _, se = run("ttt-bench", *sub, "-m", m2, "--json", cfg2)
        check(f"ttt-bench {sub[0]} --json onto its model's config.json is refused",
              rc == 2 and untouched(cfg2, before), se[-300:])


@case
def journal_signature(c):
    """A file that is not a journal is never cut back nor replaced by --journal --resume."""
    made, tmp = c.made(), c.tmp
    docs, _ = c.docs()
    a = os.path.join(docs, "a.txt")
    for name, text in [("notes.txt", "buy milk\n"), ("notes-no-newline.txt", "buy milk")]:
        notes = c.token_file(name, text)
        rc, so, se = run("ttt-perplexity", "-m", made, "-f", a, "--journal", notes, "--resume")
        check(f"--journal {name} --resume refuses a user's one-line file, untouched",
              rc == 1 and "not a ttt-perplexity journal" in se and untouched(notes, text) and so == "", se[-300:])
    j = os.path.join(tmp, "real.journal")
    rc1, so1, se1 = run("ttt-perplexity", "-m", made, "-f", a, "--journal", j)
    rc2, so2, se2 = run("ttt-perplexity", "-m", made, "-f", a, "--journal", j, "--resume")
    check("a real journal still resumes", rc1 == 0 and rc2 == 0 and "PPL = " in so2, (se1 + se2)[-300:])


@case
def compare_modes(c):
    """--compare ttt,swa,full: each document in each mode, equal to three separate runs; the report, JSON and
    plot carry every mode and its difference to full attention; bad lists are usage errors."""
    made, tmp = c.made(), c.tmp
    docs, _ = c.docs()
    j3, svg, nll3 = (os.path.join(tmp, x) for x in ("modes.json", "modes.svg", "modes.nll"))
    rc, so, se = run("ttt-perplexity", "-m", made, "-f", docs, "--compare", "ttt,swa,full", "--json", j3,
                     "--plot", svg, "--nll-out", nll3, "-q")
    check("--compare ttt,swa,full runs; the text report has a modes table",
          rc == 0 and "modes (each against full attention)" in so and "full attention" in so
          and so.rstrip().splitlines()[-1].startswith("PPL = "), (so + se)[-800:])
    if rc != 0:
        return
    j = json.load(open(j3))
    names = [m["name"] for m in j.get("modes", [])]
    check("--json: one entry per mode, each but full with its difference to full",
          names == ["ttt", "swa", "full"] and j["settings"]["modes"] == names
          and "delta_full" in j["modes"][0] and "delta_full" not in j["modes"][2]
          and all(len(d["modes"]) == 3 for d in j["documents"]) and j["modes"][0]["buckets"], str(j.get("modes"))[:400])
    single = {}
    for mode, flags in [("ttt", []), ("swa", ["--no-ttt"]), ("full", ["--full-attention"])]:
        path = os.path.join(tmp, f"single-{mode}.json")
        rc1, _, se1 = run("ttt-perplexity", "-m", made, "-f", docs, *flags, "--json", path, "-q")
        single[mode] = json.load(open(path)) if rc1 == 0 else se1
    ok = all(isinstance(v, dict) for v in single.values())
    for k, mode in enumerate(["ttt", "swa", "full"]):
        ok = ok and j["modes"][k]["mean_nll"] == single[mode]["total"]["mean_nll"]
        ok = ok and [d["modes"][k]["mean_nll"] for d in j["documents"]] == [d["mean_nll"] for d in single[mode]["documents"]]
    check("the three-way comparison equals three separate runs", ok, str(single)[:400])
    diff = j["modes"][0]["mean_nll"] - j["modes"][2]["mean_nll"]
    check("delta_full is the difference of the mode means", abs(j["modes"][0]["delta_full"]["mean_nll"] - diff) < 1e-9)
    check("--nll-out holds the main (ttt) pass", len(floats(nll3)) == j["total"]["tokens"])
    text = open(svg).read()
    root = ET.parse(svg).getroot()
    curves = re.findall(r'class="curve" d=', text)
    check("--plot: a curve per mode and a difference panel against full attention",
          root.tag.endswith("svg") and len(curves) == 5 and "mode \u2212 full attention" in text
          and "full attention: PPL" in text, text[:400])
    check_plot_legend("--compare ttt,swa,full --plot", svg, tmp)
    png = os.path.join(tmp, "modes.png")
    if shutil.which("rsvg-convert"):
        p = subprocess.run(["rsvg-convert", "-o", png, svg], capture_output=True)
        check("the three-mode plot renders", p.returncode == 0, p.stderr[-300:])
    # Any subset, any order; alone it stays ttt,swa.
    j2 = os.path.join(tmp, "pair.json")
    rc, so, se = run("ttt-perplexity", "-m", made, "-f", docs, "--compare", "full,swa", "--json", j2, "-q")
    ok = rc == 0 and [m["name"] for m in json.load(open(j2))["modes"]] == ["swa", "full"]
    check("--compare full,swa: swa against full attention", ok and "no TTT vs full attention" in so, (so + se)[-400:])
    rc, so, se = run("ttt-perplexity", "-m", made, "-f", docs, "--compare", "--json", j2, "-q")
    ok = rc == 0 and "modes" not in json.load(open(j2)) and json.load(open(j2))["settings"]["modes"] == ["ttt", "swa"]
    check("--compare alone is ttt,swa (no full-attention panel)", ok and "TTT vs no TTT" in so, (so + se)[-400:])
    expect_error("--compare with an unknown mode", "ttt-perplexity", ["-m", made, "-f", docs, "--compare", "ttt,foo"],
                 "--compare", "'foo'", code=2)
    expect_error("--compare with --full-attention", "ttt-perplexity",
                 ["-m", made, "-f", docs, "--compare", "ttt,full", "--full-attention"], "--full-attention", code=2)
    expect_error("--save-weights with --compare swa,full", "ttt-perplexity",
                 ["-m", made, "-f", docs, "--compare", "swa,full", "--save-weights", os.path.join(tmp, "sw")],
                 "--save-weights", code=2)
    # The journal covers the modes: another list is refused, the same one resumes to the same report.
    jr = os.path.join(tmp, "modes.journal")
    rc1, rep1, _ = run("ttt-perplexity", "-m", made, "-f", docs, "--compare", "ttt,full", "--journal", jr, "-q")
    rc2, _, se2 = run("ttt-perplexity", "-m", made, "-f", docs, "--compare", "ttt,swa", "--journal", jr, "--resume")
    rc3, rep3, _ = run("ttt-perplexity", "-m", made, "-f", docs, "--compare", "ttt,full", "--journal", jr, "--resume",
                       "-q")
    untimed = lambda r: [l for l in r.splitlines() if not l.strip().startswith("time")]
    check("--journal: the modes are in the fingerprint; the same modes resume to the same figures",
          rc1 == 0 and rc2 == 1 and "fingerprint" in se2 and rc3 == 0 and untimed(rep1)[:4] == untimed(rep3)[:4]
          and "PPL = " in rep3 and rep1.splitlines()[-1] == rep3.splitlines()[-1], se2[-300:])


@case
def bits_per_byte(c):
    """bits per byte of text documents: the NLL in bits over the UTF-8 bytes scored; none for token ids."""
    made, tmp = c.made(), c.tmp
    docs, texts = c.docs()
    a = os.path.join(docs, "a.txt")
    jp, nll = os.path.join(tmp, "bpb.json"), os.path.join(tmp, "bpb.nll")
    rc, so, se = run("ttt-perplexity", "-m", made, "-f", a, "--json", jp, "--nll-out", nll, "-q")
    ok = rc == 0
    if ok:
        j = json.load(open(jp))
        n_bytes = len(texts["a.txt"].encode("utf-8")) - 1  # byte tokenizer, no BOS: the first byte is not scored
        want = sum(floats(nll)) / math.log(2) / n_bytes
        ok = abs(j["total"]["bits_per_byte"] - want) < 1e-6 * want and abs(j["documents"][0]["bits_per_byte"] - want) < 1e-6 * want
        ok = ok and f"bits per byte  {want:.4f}" in so
    check("--json and the report carry bits_per_byte of text documents", ok, (so + se)[-400:])
    rc, so, se = run("ttt-perplexity", "-m", c.tiny, "--tokens", c.tokens, "--json", jp, "-q")
    check("token-id documents have no bits per byte", rc == 0 and json.load(open(jp))["total"]["bits_per_byte"] is None
          and "bits per byte" not in so, se[-300:])


@case
def windows(c):
    """--ctx N: disjoint windows of exactly N tokens, each from a fresh state; --chunks K keeps the first K."""
    made, tmp = c.made(), c.tmp
    long_doc = c.long_doc()
    jp, nll = os.path.join(tmp, "win.json"), os.path.join(tmp, "win.nll")
    rc, so, se = run("ttt-perplexity", "-m", made, "-f", long_doc, "--ctx", "100", "--chunks", "3", "--json", jp,
                     "--nll-out", nll, "-q")
    ok = rc == 0
    if ok:
        j = json.load(open(jp))
        ok = [d["name"] for d in j["documents"]] == [f"{long_doc}#{k}" for k in range(3)]
        ok = ok and all(d["tokens"] == 99 for d in j["documents"])
    check("--ctx 100 --chunks 3: three windows of 100 tokens (99 scored each), named FILE#k", ok, (so + se)[-400:])
    if ok:
        data = open(long_doc, "rb").read()
        win = c.token_file("window1.txt", " ".join(str(b) for b in data[100:200]))
        rc2, _, se2 = run("ttt-perplexity", "-m", made, "--tokens", win, "--nll-out", os.path.join(tmp, "w1.nll"), "-q")
        check("a window is scored from a fresh state: window 1 equals its tokens scored alone",
              rc2 == 0 and floats(nll)[99:198] == floats(os.path.join(tmp, "w1.nll")), se2[-300:])
    rc, so, se = run("ttt-perplexity", "-m", made, "-f", long_doc, "--ctx", "5000", "--json", jp, "-q")
    check("--ctx without --chunks keeps every whole window and drops the tail",
          rc == 0 and len(json.load(open(jp))["documents"]) == 4, se[-300:])
    expect_error("--chunks without --ctx", "ttt-perplexity", ["-m", made, "-f", long_doc, "--chunks", "2"], "--ctx",
                 code=2)
    expect_error("--ctx 1", "ttt-perplexity", ["-m", made, "-f", long_doc, "--ctx", "1"], "--ctx", code=2)
    expect_error("--chunks 0", "ttt-perplexity", ["-m", made, "-f", long_doc, "--ctx", "10", "--chunks", "0"],
                 "--chunks", code=2)
    expect_error("--ctx longer than every document", "ttt-perplexity",
                 ["-m", made, "-f", long_doc, "--ctx", "100000"], "whole window of 100000 tokens")


@case
def kl_divergence(c):
    """--kl-divergence-base FILE saves every token's log-probabilities without changing the NLLs; --kl-divergence
    compares a run with it: 0 against itself, above 0 without TTT; a base of other tokens or vocabulary is refused
    untouched."""
    made, tmp = c.made(), c.tmp
    doc = c.long_doc()
    base, nll_a, nll_b = (os.path.join(tmp, x) for x in ("ttt.kld", "kld-a.nll", "kld-b.nll"))
    cut = ["--max-tokens", "1000"]  # 1000 tokens: many mini-batches of B = 64, so TTT has taken steps
    rc, so, se = run("ttt-perplexity", "-m", made, "-f", doc, *cut, "--kl-divergence-base", base, "--nll-out", nll_a,
                     "-q")
    rc2, _, se2 = run("ttt-perplexity", "-m", made, "-f", doc, *cut, "--nll-out", nll_b, "-q")
    ok = rc == 0 and rc2 == 0 and os.path.getsize(base) == 40 + 16 + 999 * (16 + 2 * 256)
    check("--kl-divergence-base writes 16 + 2V bytes a predicted token after its header",
          ok and open(base, "rb").read(8) == b"TTT-KLD\n", (se + se2)[-400:])
    check("reading every token's logits leaves the NLLs (and the test-time steps) as they are",
          ok and floats(nll_a) == floats(nll_b) and len(floats(nll_a)) == 999)
    if not ok:
        return
    js = os.path.join(tmp, "kld-self.json")
    rc, so, se = run("ttt-perplexity", "-m", made, "-f", doc, *cut, "--kl-divergence-base", base, "--kl-divergence",
                     "--json", js, "-q")
    k = json.load(open(js))["kld"] if rc == 0 else {}
    check("a run against its own base: KLD 0, \u0394p 0, the same top token everywhere",
          rc == 0 and k["tokens"] == 999 and k["kld_mean"] == 0 and k["dp_rms"] == 0 and k["same_top"] == 1
          and k["kld_percentiles"]["max"] == 0 and "same top token   100.000" in so
          and so.rstrip().splitlines()[-1].startswith("PPL = "), (so + se)[-600:])
    jn = os.path.join(tmp, "kld-nottt.json")
    rc, so, se = run("ttt-perplexity", "-m", made, "-f", doc, *cut, "--kl-divergence-base", base, "--kl-divergence",
                     "--no-ttt", "--json", jn, "-q")
    k = json.load(open(jn))["kld"] if rc == 0 else {}
    ok = rc == 0 and k["kld_mean"] > 0 and k["kld_err"] > 0 and k["kld_percentiles"]["min"] >= 0
    # The first mini-batch predates any test-time step: identical there, so the smallest KLDs are 0.
    ok = ok and k["kld_percentiles"]["min"] == 0 and k["kld_percentiles"]["max"] >= k["kld_percentiles"]["median"] > 0
    ok = ok and k["dp_rms"] > 0 and 0 <= k["same_top"] < 1 and "mean KLD" in so and "RMS \u0394p" in so
    check("--no-ttt against a TTT base: KLD above 0, with its error, percentiles, \u0394p and same top token", ok,
          str(k)[:400] + se[-300:])
    # Refusals leave the base as it was.
    before = open(base, "rb").read()
    other = c.token_file("kld-other.txt", open(doc).read().replace("fox", "cat"))
    tiny_base = os.path.join(tmp, "tiny.kld")
    rc, _, se = run("ttt-perplexity", "-m", c.tiny, "--tokens", c.tokens, "--kl-divergence-base", tiny_base, "-q")
    check("a base of token-id documents", rc == 0, se[-300:])
    expect_error("--kl-divergence: a base of another vocabulary", "ttt-perplexity",
                 ["-m", made, "--tokens", c.tokens, "--kl-divergence-base", tiny_base, "--kl-divergence"],
                 tiny_base, "vocabulary of 97 tokens", "256")
    expect_error("--kl-divergence: a base of another token count", "ttt-perplexity",
                 ["-m", made, "-f", doc, "--max-tokens", "500", "--kl-divergence-base", base, "--kl-divergence"],
                 base, "999 predicted tokens", "499")
    expect_error("--kl-divergence: a base of other documents", "ttt-perplexity",
                 ["-m", made, "-f", other, *cut, "--kl-divergence-base", base, "--kl-divergence"],
                 base, "document 0", "other tokens")
    expect_error("--kl-divergence: not a base", "ttt-perplexity",
                 ["-m", made, "-f", doc, "--kl-divergence-base", doc, "--kl-divergence"], doc, "not a KL-divergence base")
    expect_error("--kl-divergence without a base", "ttt-perplexity", ["-m", made, "-f", doc, "--kl-divergence"],
                 "--kl-divergence-base", code=2)
    expect_error("--kl-divergence-base with --parallel", "ttt-perplexity",
                 ["-m", made, "-f", doc, "--kl-divergence-base", os.path.join(tmp, "p.kld"), "--parallel", "2"],
                 "--kl-divergence-base", "--parallel", code=2)
    expect_error("--kl-divergence-base with --resume", "ttt-perplexity",
                 ["-m", made, "-f", doc, "--kl-divergence-base", base, "--kl-divergence", "--journal",
                  os.path.join(tmp, "kld.journal"), "--resume"], "--resume", code=2)
    expect_error("--json over the base being read", "ttt-perplexity",
                 ["-m", made, "-f", doc, "--kl-divergence-base", base, "--kl-divergence", "--json", base],
                 "--json", "--kl-divergence-base", code=2)
    check("a refused run leaves the base untouched", open(base, "rb").read() == before)


@case
def session_files(c):
    """ttt-generate --save-session / --load-session: reading a prompt, saving, loading and generating (greedy) gives
    the text of one uninterrupted run, with and without test-time training; a session of another model, with other
    options, or a corrupt one is refused."""
    made, tmp = c.made(), c.tmp
    prompt = "The quick brown fox jumps over the lazy dog; " * 4  # 180 tokens: past two mini-batches of B = 64
    ses = lambda name: os.path.join(tmp, name)
    out = os.path.join(tmp, "gen.json")

    def gen(*args):
        """(exit status, generated ids, stderr); the text of a random model need not be UTF-8."""
        if os.path.exists(out):
            os.remove(out)
        p = subprocess.run([exe("ttt-generate"), "-m", made, "-q", "--json", out, *args], capture_output=True,
                           timeout=600)
        ids = json.load(open(out))["ids"] if p.returncode == 0 else None
        return p.returncode, ids, p.stderr.decode("utf-8", "replace")

    for flags in ([], ["--no-ttt"]):
        label = " ".join(flags) or "with test-time training"
        rc, whole, se = gen("-p", prompt, "-n", "150", *flags)
        rc1, part1, se1 = gen("-p", prompt, "-n", "0", "--save-session", ses("read.ses"), *flags)
        rc2, part2, se2 = gen("--load-session", ses("read.ses"), "-n", "150", *flags)
        check(f"read, save, load, generate = one uninterrupted run ({label})",
              rc == rc1 == rc2 == 0 and len(whole or []) == 150 and part1 == [] and part2 == whole, (se + se1 + se2)[-400:])
        # Saved mid-generation (a mini-batch half done), continued with an empty prompt.
        rc1, part1, se1 = gen("-p", prompt, "-n", "70", "--save-session", ses("mid.ses"), *flags)
        rc2, part2, se2 = gen("--load-session", ses("mid.ses"), "-p", "", "-n", "80", *flags)
        check(f"saved after 70 generated tokens, 80 more = the uninterrupted 150 ({label})",
              rc1 == rc2 == 0 and part1 + part2 == whole, (se1 + se2)[-400:])
    # ttt-perplexity --save-session: the state at the end of the (last) document, continued by ttt-generate.
    docs, _ = c.docs()
    doc = c.token_file("session-doc.txt", prompt)
    for flags in ([], ["--no-ttt"]):
        label = " ".join(flags) or "with test-time training"
        rc1, _, se1 = run("ttt-perplexity", "-m", made, "-f", os.path.join(docs, "a.txt"), "-f", doc, "-q",
                          "--save-session", ses("ppl.ses"), *flags)
        rc2, part, se2 = gen("--load-session", ses("ppl.ses"), "-n", "60", *flags)
        rc3, whole, se3 = gen("-f", doc, "-n", "60", *flags)
        check(f"ttt-perplexity --save-session, then ttt-generate --load-session = generating after the document ({label})",
              rc1 == rc2 == rc3 == 0 and len(part) == 60 and part == whole, (se1 + se2 + se3)[-400:])
    expect_error("ttt-perplexity --save-session with --parallel", "ttt-perplexity",
                 ["-m", made, "-f", doc, "--parallel", "2", "--save-session", ses("p2.ses")], "--save-session",
                 code=2)
    expect_error("ttt-perplexity --save-session with --full-attention", "ttt-perplexity",
                 ["-m", made, "-f", doc, "--full-attention", "--save-session", ses("p2.ses")], "--save-session",
                 code=2)
    # A prompt appended to a loaded session is read as if it followed in one run.
    rc, whole, _ = gen("-p", prompt + "Once more: ", "-n", "40")
    gen("-p", prompt, "-n", "0", "--save-session", ses("ttt.ses"))
    expect_error("a session is refused by a run with other options", "ttt-generate",
                 ["-m", made, "--load-session", ses("ttt.ses"), "--no-ttt"], "ttt.ses", "other options",
                 "test-time training on")
    expect_error("--load-session with --full-attention", "ttt-generate",
                 ["-m", made, "--load-session", ses("ttt.ses"), "--full-attention"], "--full-attention", code=2)
    rc2, part, se2 = gen("--load-session", ses("ttt.ses"), "-p", "Once more: ", "-n", "40")
    check("--load-session with a prompt continues the document with it", rc == rc2 == 0 and part == whole, se2[-300:])
    other = os.path.join(tmp, "made-seed4")
    if not os.path.exists(other):
        run("ttt-make-model", "--preset", "tiny", "--seed", "4", "--out", other)
    expect_error("--load-session of another model", "ttt-generate", ["-m", other, "--load-session", ses("ttt.ses")],
                 ses("ttt.ses"), "another model")
    data = bytearray(open(ses("ttt.ses"), "rb").read())
    data[len(data) // 2] ^= 1
    open(ses("flipped.ses"), "wb").write(data)
    open(ses("short.ses"), "wb").write(data[:1000])
    expect_error("--load-session of a corrupt file", "ttt-generate", ["-m", made, "--load-session", ses("flipped.ses")],
                 "flipped.ses", "corrupt")
    expect_error("--load-session of a truncated file", "ttt-generate", ["-m", made, "--load-session", ses("short.ses")],
                 "short.ses", "corrupt")
    expect_error("--load-session of a non-session", "ttt-generate",
                 ["-m", made, "--load-session", os.path.join(made, "config.json")], "not a session file")
    # The storage is part of a session (format version 2): a bf16/f16 session is refused by an f32 run, and continued
    # by a run in its own storage exactly as one run in that storage; a version 1 file (no storage) is still read.
    low = ["--weight-dtype", "bf16", "--kv-dtype", "f16"]
    rc, whole, se = gen("-p", prompt, "-n", "30", *low)
    rc1, _, se1 = gen("-p", prompt, "-n", "0", "--save-session", ses("low.ses"), *low)
    expect_error("a bf16/f16 session is refused by an f32 run", "ttt-generate",
                 ["-m", made, "--load-session", ses("low.ses"), "-n", "5"], "low.ses",
                 "bf16 weights and f16 keys/values", "f32 weights and f32 keys/values")
    expect_error("... and by a run with f16 keys/values but f32 weights", "ttt-generate",
                 ["-m", made, "--load-session", ses("low.ses"), "-n", "5", "--kv-dtype", "f16"], "low.ses",
                 "bf16 weights")
    rc2, part, se2 = gen("--load-session", ses("low.ses"), "-n", "30", *low)
    check("a bf16/f16 session continues in bf16/f16 as one run", rc == rc1 == rc2 == 0 and part == whole,
          (se + se1 + se2)[-400:])
    v2 = open(ses("ttt.ses"), "rb").read()[:-8]
    assert struct.unpack_from("<I", v2, 8)[0] == 2
    v1 = bytearray(v2[:40] + v2[48:])  # without the two storage codes after the vocabulary
    struct.pack_into("<I", v1, 8, 1)
    h = 1469598103934665603
    for b in v1:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    open(ses("v1.ses"), "wb").write(bytes(v1) + struct.pack("<Q", h))
    rc1, part1, se1 = gen("--load-session", ses("v1.ses"), "-n", "20")
    rc2, part2, se2 = gen("--load-session", ses("ttt.ses"), "-n", "20")
    check("a version 1 session file (no storage recorded) is still read, as its version 2 twin",
          rc1 == rc2 == 0 and len(part1) == 20 and part1 == part2, (se1 + se2)[-300:])
    expect_error("no prompt and no session", "ttt-generate", ["-m", made], "--load-session", code=2)
    expect_error("--save-session over the model", "ttt-generate",
                 ["-m", made, "-p", "x", "--save-session", os.path.join(made, "model.safetensors")], "--save-session",
                 code=2)


def interrupt_code(cmd, wait_for=None, delay=1.5, stdin=None):
    """Exit status of cmd after one SIGINT, sent once `wait_for` shows on stderr (or after delay)."""
    p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = ""
    if wait_for:
        for line in p.stderr:
            seen += line
            if wait_for in line:
                break
    else:
        import time
        time.sleep(delay)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    return p.returncode, seen + err


@case
def flag_conventions(c):
    """One convention: -d is --device, --device N is an index, --device '' an error, --version everywhere,
    exit 2 for usage, 1 at run time, 130 on SIGINT, -f - reads standard input."""
    made, tmp, tokens, tiny = c.made(), c.tmp, c.tokens, c.tiny
    docs, texts = c.docs()
    a = os.path.join(docs, "a.txt")
    version = version_of_project()
    for tool, args in [("ttt-perplexity", []), ("ttt-generate", []), ("ttt-train", []), ("ttt-tokenize", []),
                       ("ttt-make-model", []), ("ttt-info", []), ("ttt-bench", []), ("ttt-bench", ["prefill"])]:
        rc, so, se = run(tool, *args, "--version")
        check(f"{tool} {' '.join(args)} --version prints {version}",
              rc == 0 and so.strip() == f"{tool} (ttt-cl) {version}", (so + se)[-200:])
    for tool, args in [("ttt-perplexity", ["-m", tiny, "--tokens", tokens]), ("ttt-generate", ["-m", made, "-p", "A"]),
                       ("ttt-bench", ["prefill", "--preset", "tiny"]),
                       ("ttt-train", ["--resume", tmp, "--out", os.path.join(tmp, "never"), "--gradient", "device"])]:
        rc, _, se = run(tool, *args, "--device", "")
        check(f"{tool} --device '' is a usage error", rc == 2 and "--device" in se, se[-300:])
    # -d is --device in every tool, ttt-tokenize included (which has no device: -d is not --decode there).
    rc, _, se = run("ttt-perplexity", "-m", tiny, "--tokens", tokens, "-d", "0", "-q")
    check("ttt-perplexity -d 0 selects the first device", rc == 0 and "on 0:0 " in se, se[-300:])
    rc, _, se = run("ttt-tokenize", "-m", made, "-d")
    check("ttt-tokenize -d is not --decode", rc == 2, se[-300:])
    rc, ids, _ = run("ttt-tokenize", "-m", made, stdin="hi")
    rc2, back, se = run("ttt-tokenize", "-m", made, "--decode", stdin=ids)
    check("ttt-tokenize --decode gives the text back", rc == rc2 == 0 and back == "hi", se[-300:])
    # --device N is the N-th device, never part of a name.
    rc, info, _ = run("ttt-info")
    specs = re.findall(r"^  Device ([0-9]+:[0-9]+)", info, re.M)
    rc, _, se = run("ttt-perplexity", "-m", tiny, "--tokens", tokens, "--device", "1", "-q")
    if len(specs) == 1:
        check("--device 1 with one device matches nothing (not a name holding '1'): a usage error",
              rc == 2 and "matches no OpenCL device" in se, se[-300:])
    else:
        check("--device 1 is the second device", rc == 0 and f"on {specs[1]} " in se, se[-300:])
    rc, _, se = run("ttt-perplexity", "-m", tiny, "--tokens", tokens, "--device", str(len(specs)), "-q")
    check("--device N past the last device matches nothing: a usage error", rc == 2 and "matches no OpenCL device" in se,
          se[-300:])

    # Usage errors exit 2, runtime errors 1, in every tool.
    nope = os.path.join(tmp, "no-such-dir")
    for tool, usage, runtime in [
            ("ttt-perplexity", ["-m", tiny], ["-m", nope, "--tokens", tokens]),
            ("ttt-generate", ["-m", made, "-p", "A", "-n", "-1"], ["-m", nope, "-p", "A"]),
            ("ttt-train", ["--out", os.path.join(tmp, "t-x")], ["--resume", made, "--out", os.path.join(tmp, "t-y")]),
            ("ttt-tokenize", ["--bogus"], ["--tokenizer", os.path.join(tmp, "no-tokenizer.json")]),
            ("ttt-make-model", ["--preset", "7b", "--out", os.path.join(tmp, "mm")],
             ["--preset", "tiny", "--out", os.path.join(UNWRITABLE, "mm")]),
            ("ttt-info", ["--bogus"], None),
            ("ttt-bench", ["nonsense"], ["prefill", "-m", nope])]:
        rc, _, se = run(tool, *usage)
        check(f"{tool}: a usage error exits 2 ({' '.join(usage[-2:])})", rc == 2 and f"{tool}: error: " in se,
              f"exit {rc}: {se[-300:]}")
        if runtime:
            rc, _, se = run(tool, *runtime, stdin="")
            check(f"{tool}: a runtime error exits 1", rc == 1 and f"{tool}: error: " in se, f"exit {rc}: {se[-300:]}")
    # An interrupt exits 130 in every tool (ttt-perplexity, ttt-generate and ttt-train: their own cases).
    rc, se = interrupt_code([exe("ttt-tokenize"), "-m", made], stdin=subprocess.PIPE)
    check("ttt-tokenize: SIGINT exits 130", rc == 130, f"exit {rc}: {se[-300:]}")
    rc, se = interrupt_code([exe("ttt-make-model"), "--preset", "125m", "--out", os.path.join(tmp, "int-125m")],
                            wait_for="initialising")
    check("ttt-make-model: SIGINT exits 130", rc == 130, f"exit {rc}: {se[-300:]}")
    rc, se = interrupt_code([exe("ttt-bench"), "prefill", "--preset", "tiny", "--tokens", "200000", "--no-warmup"],
                            wait_for="loading")
    check("ttt-bench: SIGINT exits 130", rc == 130, f"exit {rc}: {se[-300:]}")

    # -f - reads standard input.
    n1, n2 = os.path.join(tmp, "stdin-a.txt"), os.path.join(tmp, "file-a.txt")
    rc1, _, se1 = run("ttt-perplexity", "-m", made, "-f", "-", "--nll-out", n1, "-q", stdin=texts["a.txt"])
    rc2, _, se2 = run("ttt-perplexity", "-m", made, "-f", a, "--nll-out", n2, "-q")
    check("ttt-perplexity -f - scores standard input like the file", rc1 == rc2 == 0 and floats(n1) == floats(n2),
          (se1 + se2)[-300:])
    # A random model writes any bytes: compare them as bytes.
    p1 = subprocess.run([exe("ttt-generate"), "-m", made, "-f", "-", "-n", "4", "-q"], input=b"Hello",
                        capture_output=True, timeout=300)
    p2 = subprocess.run([exe("ttt-generate"), "-m", made, "-p", "Hello", "-n", "4", "-q"], capture_output=True,
                        timeout=300)
    check("ttt-generate -f - reads the prompt from standard input",
          p1.returncode == p2.returncode == 0 and p1.stdout == p2.stdout, (p1.stderr + p2.stderr)[-300:])
    rc, so, se = run("ttt-tokenize", "-m", made, "-f", "-", stdin="AB")
    check("ttt-tokenize -f - reads standard input", rc == 0 and so == "65 66\n", se[-300:])


@case
def small_things(c):
    """Wording: plurals, empty --stop, ttt-info --help, .npy and binary token files, -n 0, the decode plot title."""
    made, tmp, tiny = c.made(), c.tmp, c.tiny
    two = c.token_file("two-ids.txt", "5 6")
    rc, _, se = run("ttt-perplexity", "-m", tiny, "--tokens", two, "-q")
    check("one token to score is singular", rc == 0 and "1 token to score" in se and "1 tokens" not in se, se[-300:])
    rc, _, se = run("ttt-generate", "-m", made, "-p", "A", "--stop", "")
    check("ttt-generate --stop '' is refused", rc == 2 and "--stop" in se, se[-300:])
    rc, so, _ = run("ttt-info", "--help")
    check("ttt-info --help has no empty Options: heading", rc == 0 and not so.rstrip().endswith("Options:")
          and "--version" in so, so[-300:])
    npy = os.path.join(tmp, "floats.npy")
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"
    hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
    with open(npy, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + struct.pack("<3f", 1, 2, 3))
    rc, _, se = run("ttt-perplexity", "-m", tiny, "--tokens", npy)
    check("a float .npy: one line naming the dtype, without the padded header",
          rc == 1 and "'<f4'" in se and len(se.strip().splitlines()) == 1 and "    " not in se, repr(se[-300:]))
    binary = os.path.join(tmp, "binary.bin")
    with open(binary, "wb") as f:
        f.write(b"\x7fELF\x02\x01\x01\x00\x1b[31m\xff\xfe rest")
    p = subprocess.run([exe("ttt-perplexity"), "-m", tiny, "--tokens", binary], capture_output=True, timeout=120)
    check("a binary --tokens file is shown escaped, no raw bytes",
          p.returncode == 1 and b"\\x7fELF\\x02" in p.stderr and b"\x1b" not in p.stderr and b"\xff" not in p.stderr
          and p.stderr.count(b"\n") == 1, repr(p.stderr[-300:]))
    prompt = "The quick brown fox jumps over the lazy dog. " * 7
    rates = {}
    for n in ("0", "1"):
        js = os.path.join(tmp, f"n{n}.json")
        p = subprocess.run([exe("ttt-generate"), "-m", made, "-p", prompt, "-n", n, "--json", js],
                           capture_output=True, timeout=300)
        rates[n] = json.load(open(js))["prefill_tokens_per_s"] if p.returncode == 0 else p.stderr[-300:]
    ok = all(isinstance(v, float) for v in rates.values()) and rates["0"] < 5 * rates["1"]
    check(f"ttt-generate -n 0 reports the prefill rate of a real prefill ({rates})", ok, str(rates)[:300])
    # The decode plot's title fits its width, however long the model path and device name.
    long_dir = os.path.join(tmp, "a-model-directory-with-a-rather-long-name-" + "x" * 40)
    shutil.copytree(tiny, long_dir)
    svg = os.path.join(tmp, "decode.svg")
    rc, _, se = run("ttt-bench", "decode", "-m", long_dir, "--contexts", "64,128", "--modes", "ttt", "--tokens", "2",
                    "--no-step", "--no-bandwidth", "--plot", svg)
    ok = rc == 0
    if ok:
        root = ET.parse(svg).getroot()
        width = float(root.get("width"))
        heads = [t for t in root.iter() if t.tag.endswith("text") and t.get("text-anchor") == "middle"
                 and t.get("font-size") and float(t.get("x")) == width / 2]
        fits = [len(t.text) * 0.6 * float(t.get("font-size")) <= width - 20 for t in heads]
        ok = len(heads) == 2 and all(fits) and heads[0].text.startswith("decode latency") and "\u2026" in heads[0].text
    check("ttt-bench decode --plot: the title fits the plot", ok, se[-300:] if rc else open(svg).read()[:600])


TOKENIZER_FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "fixtures",
                                  "tokenizers")


@case
def compile_progress(c):
    """A cold kernel cache never leaves a long silence: each program built says which it is, out of how many
    (plain lines when stderr is not a terminal), in ttt-perplexity and in ttt-generate."""
    made, tmp = c.made(), c.tmp
    doc = c.token_file("cp.txt", "Compile me, then score me. " * 20)
    cold = {"TTT_CACHE_DIR": os.path.join(tmp, "cp-kernels")}
    rc, _, se = run("ttt-perplexity", "-m", made, "-f", doc, "-q", env=cold)
    steps = re.findall(r"^ttt-perplexity: compiling kernels: (\d+)/(\d+) (\w+)$", se, re.M)
    idx = [int(i) for i, _, _ in steps]
    ok = rc == 0 and len(steps) >= 9 and idx == list(range(1, len(idx) + 1))
    ok = ok and all(int(n) == int(steps[-1][1]) for _, n, _ in steps)
    ok = ok and {"attention", "matvec", "clblast"} <= {f for *_, f in steps}  # CLBlast's GEMM programs too
    check("ttt-perplexity: a cold cache names each program compiled, k/N", ok, se[-800:])
    loose = re.findall(r"^ttt-perplexity: compiling kernels: (\w+)$", se, re.M)  # compiled outside the count
    ok = rc == 0 and not loose and steps and steps[-1][0] == steps[-1][1]
    check("ttt-perplexity: the count holds every program the run compiles (attention_decode too) and ends at N/N",
          ok, f"not counted: {loose}; " + se[-800:])
    rc, _, se = run("ttt-perplexity", "-m", made, "-f", doc, "-q", env=cold)
    check("a warm cache compiles nothing and says nothing", rc == 0 and "compiling kernels" not in se, se[-300:])
    rc, _, se = run("ttt-generate", "-m", made, "-p", "In the", "-n", "3", "-q",
                    env={"TTT_CACHE_DIR": os.path.join(tmp, "cp-kernels-gen")})
    ok = rc == 0 and "ttt-generate: compiling kernels for " in se and re.search(r"compiling kernels: 1/\d+ ", se)
    check("ttt-generate: a cold cache says that it compiles, and which program", ok, se[-600:])


@case
def train_eval_progress(c):
    """ttt-train's held-out evaluations show progress, and the ETA counts those still to come (estimated from a timed
    sample before the first has run)."""
    f, tmp = train_fixture(c), c.tmp
    out = os.path.join(tmp, "t-evp")
    args = train_args(f, out, "--eval-data", f["eval"], "--eval-every", "1")
    args.remove("--quiet")
    rc, _, se = run("ttt-train", *args)
    ok = rc == 0 and re.search(r"step 1/3 .*ETA ~[0-9hms]+\n", se) and not re.search(r"\+ \d+ evaluation", se)
    check("before the first evaluation the ETA is an estimate (~) that counts the evaluations", ok, se[-800:])
    ok = rc == 0 and all(re.search(rf"eval at step {k} \(with and without TTT\): done, (\d+)/\1 tokens", se)
                         for k in (1, 2, 3))
    check("each evaluation shows its progress and its end", ok, se[-800:])
    after = se.split("eval at step 1 (with and without TTT): done")[-1]
    ok = rc == 0 and re.search(r"step 3/3 .*ETA [0-9hms]+\n", after) and not re.search(r"\+ \d+ evaluation", after)
    check("after one evaluation the ETA includes the evaluations (no separate count)", ok, se[-800:])


@case
def train_resume_eval(c):
    """--resume keeps the run's --eval-data and --eval-every (given again, they replace them)."""
    f, tmp = train_fixture(c), c.tmp
    part, rest, other = (os.path.join(tmp, n) for n in ("t-ev-part", "t-ev-rest", "t-ev-other"))
    rc1, _, e1 = run("ttt-train", *train_args(f, part, "--eval-data", f["eval"], "--eval-every", "1", "--until", "2",
                                             steps=4))
    rc2, _, e2 = run("ttt-train", "--resume", part, "--out", rest, "--quiet")
    check("ttt-train --until 2, then --resume", rc1 == rc2 == 0, (e1 + e2)[-600:])
    if rc1 or rc2:
        return
    evals = [r["step"] for r in jsonl(os.path.join(rest, "train.jsonl")) if "eval_nll_ttt" in r]
    check("the resumed run evaluates on the checkpoint's --eval-data every --eval-every steps", evals == [1, 2, 3, 4],
          str(evals))
    settings = json.load(open(os.path.join(rest, "trainer.json")))["settings"]
    check("the checkpoint records the held-out settings", settings.get("eval_every") == 1 and
          [os.path.basename(p) for p in settings.get("eval_data", [])] == ["eval.txt"], str(settings)[:400])
    rc3, _, e3 = run("ttt-train", "--resume", part, "--out", other, "--quiet", "--eval-every", "2")
    evals = [r["step"] for r in jsonl(os.path.join(other, "train.jsonl")) if "eval_nll_ttt" in r] if rc3 == 0 else []
    check("--eval-every given again replaces the checkpoint's", rc3 == 0 and evals == [1, 2, 4], f"{evals} {e3[-300:]}")
    moved = os.path.join(tmp, "t-ev-moved")
    shutil.copytree(part, moved)
    tj = os.path.join(moved, "trainer.json")
    record = json.load(open(tj))
    record["settings"]["eval_data"] = [os.path.join(tmp, "gone-eval.txt")]
    json.dump(record, open(tj, "w"))
    expect_error("--resume whose held-out data is gone", "ttt-train",
                 ["--resume", moved, "--out", os.path.join(tmp, "t-ev-x")], "gone-eval.txt", "--eval-data", code=2)


@case
def train_interrupted_eval(c):
    """An evaluation an interrupt drops is said on stderr, and --resume does it before the next step."""
    f, tmp = train_fixture(c), c.tmp
    part, rest = os.path.join(tmp, "t-ie-part"), os.path.join(tmp, "t-ie-rest")
    big = os.path.join(tmp, "t-ie-eval.txt")  # an evaluation of seconds, so that the interrupt comes during one
    with open(big, "w") as fh:
        fh.write(open(f["eval"]).read() * max(1, 300000 // max(1, os.path.getsize(f["eval"]))))
    args = train_args(f, part, "--eval-data", big, "--eval-every", "1", steps=50)
    args.remove("--quiet")
    proc, err = interrupt_train(args, timeout=300)  # during step 1's evaluation (or, were it done, step 2's is skipped)
    step = json.load(open(os.path.join(part, "trainer.json")))["step"] if proc.returncode == 130 else -1
    evals = [r["step"] for r in jsonl(os.path.join(part, "train.jsonl")) if "eval_nll_ttt" in r]
    ok = proc.returncode == 130 and step not in evals and f"held-out evaluation of step {step} was" in err
    check("an evaluation dropped by an interrupt is said on stderr", ok, f"exit {proc.returncode}, step {step}, "
          f"evals {evals}, {err[-400:]!r}")
    if not ok:
        return
    rc, _, e2 = run("ttt-train", "--resume", part, "--out", rest, "--until", str(step + 1))
    evals = [r["step"] for r in jsonl(os.path.join(rest, "train.jsonl")) if "eval_nll_ttt" in r] if rc == 0 else []
    ok = rc == 0 and evals == list(range(1, step + 2)) and f"evaluation of step {step} was not finished" in e2
    check("--resume does the dropped evaluation first", ok, f"exit {rc}, evals {evals}, {e2[-400:]!r}")


@case
def corpus_resume_note(c):
    """A resumed corpus run says how many documents its journal already held."""
    made, tmp = c.made(), c.tmp
    docs, _ = c.docs()
    a, b = os.path.join(docs, "a.txt"), os.path.join(docs, "b.txt")
    journal = os.path.join(tmp, "note.journal")
    rc1, _, e1 = run("ttt-perplexity", "-m", made, "-f", a, "--journal", journal, "-q")
    rc2, _, e2 = run("ttt-perplexity", "-m", made, "-f", a, "-f", b, "--journal", journal, "--resume")
    ok = rc1 == rc2 == 0 and "--resume: the journal" in e2 and "already holds 1 of 2 documents" in e2
    check("--resume says what the journal held", ok, (e1 + e2)[-500:])


@case
def journal_renamed(c):
    """--resume matches documents by their tokens: a renamed file only warns; other tokens are refused; a file that
    is no journal is named so, also without --resume."""
    made, tmp = c.made(), c.tmp
    a = os.path.join(tmp, "jr-a.txt")
    with open(a, "w") as f:
        f.write("And God said, Let there be light: and there was light. " * 3)
    journal = os.path.join(tmp, "jr.journal")
    rc1, so1, e1 = run("ttt-perplexity", "-m", made, "-f", a, "--journal", journal, "-q")
    b = os.path.join(tmp, "jr-b.txt")
    shutil.copy(a, b)
    rc2, so2, e2 = run("ttt-perplexity", "-m", made, "-f", b, "--journal", journal, "--resume")
    ok = rc1 == rc2 == 0 and "warning" in e2 and "jr-a.txt in the journal" in e2 and "already holds 1 of 1" in e2
    ok = ok and re.search(r"PPL = \S+", so1).group(0) == re.search(r"PPL = \S+", so2).group(0)
    check("--resume takes a renamed document with the same tokens from the journal, with a warning", ok,
          (e1 + e2)[-500:])
    with open(b, "a") as f:
        f.write("More words.")
    rc, _, err = run("ttt-perplexity", "-m", made, "-f", b, "--journal", journal, "--resume")
    check("--resume refuses a document whose tokens changed", rc == 1 and "error:" in err and "other tokens" in err,
          err[-400:])
    notes = os.path.join(tmp, "notes.txt")
    with open(notes, "w") as f:
        f.write("my own notes\n")
    rc, _, err = run("ttt-perplexity", "-m", made, "-f", a, "--journal", notes)
    check("--journal naming a file that is no journal says so (no --resume)",
          rc == 1 and "not a ttt-perplexity journal" in err and "untouched" in err and "--resume" not in err, err[-400:])
    check("and leaves it untouched", open(notes).read() == "my own notes\n")


@case
def preset_tokenizer(c):
    """A preset with the Llama-3 vocabulary: ttt-make-model --tokenizer copies the tokenizer in; without one it says
    where to get it, and so does the error of a tool that reads text; ttt-generate takes --tokenizer."""
    tmp, made = c.tmp, c.made()
    rc, out, _ = run("ttt-make-model", "--help")
    check("ttt-make-model --help has --tokenizer", rc == 0 and "--tokenizer" in out, out[:300])
    rc, out, _ = run("ttt-generate", "--help")
    check("ttt-generate --help has --tokenizer", rc == 0 and "--tokenizer" in out, out[:300])
    expect_error("ttt-make-model --tokenizer for a byte-level preset", "ttt-make-model",
                 ["--preset", "tiny", "--out", os.path.join(tmp, "pt-tiny"), "--tokenizer", c.tokens], "--tokenizer",
                 "bytes", code=2)
    expect_error("ttt-make-model --tokenizer that is not there", "ttt-make-model",
                 ["--preset", "125m", "--out", os.path.join(tmp, "pt-gone"), "--tokenizer",
                  os.path.join(tmp, "gone.json")], "--tokenizer", "gone.json")
    check("a failed --tokenizer leaves no model behind", not os.path.exists(os.path.join(tmp, "pt-gone")))
    llama = os.path.join(TOKENIZER_FIXTURES, "llama3", "tokenizer.json")
    gpt2 = os.path.join(TOKENIZER_FIXTURES, "gpt2", "tokenizer.json")
    if not os.path.exists(llama):
        check("tokenizer fixtures present (../shared/fixtures/tokenizers)", False, TOKENIZER_FIXTURES)
        return
    expect_error("ttt-generate --tokenizer larger than the model's vocabulary", "ttt-generate",
                 ["-m", made, "-p", "hi", "--tokenizer", gpt2], "--tokenizer", "vocab_size")
    m125 = os.path.join(tmp, "pt-125m")
    rc, so, se = run("ttt-make-model", "--preset", "125m", "--dtype", "bf16", "--out", m125)
    ok = rc == 0 and "has no tokenizer" in se and "meta-llama" in se and os.path.join(m125, "tokenizer.json") in se
    check("ttt-make-model --preset 125m without --tokenizer says where to get one", ok, se[-500:])
    expect_error("text on a preset without a tokenizer: the error names the file to fetch and where",
                 "ttt-tokenize", ["-m", m125, "-f", c.tokens], "meta-llama", os.path.join(m125, "tokenizer.json"),
                 "--tokenizer")
    shutil.rmtree(m125, ignore_errors=True)
    rc, so, se = run("ttt-make-model", "--preset", "125m", "--dtype", "bf16", "--out", m125, "--tokenizer", llama)
    copied = os.path.join(m125, "tokenizer.json")
    ok = rc == 0 and os.path.exists(copied) and open(copied, "rb").read() == open(llama, "rb").read()
    check("ttt-make-model --tokenizer copies it into the model", ok, se[-400:])
    rc, so, se = run("ttt-tokenize", "-m", m125, "-f", c.token_file("pt.txt", "Hello world"))
    check("and the model then reads text", rc == 0 and so.split() == ["9906", "1917"], (so + se)[-300:])
    # A tokenizer of another family (50257 GPT-2 ids against 128256): every number would be wrong, so refused.
    expect_error("ttt-perplexity --tokenizer with far fewer ids than the model's vocabulary", "ttt-perplexity",
                 ["-m", m125, "-f", c.token_file("pt.txt", "Hello world"), "--tokenizer", gpt2], "50257 ids",
                 "128256", "fewer than half", code=1)
    shutil.rmtree(m125, ignore_errors=True)
    expect_error("ttt-make-model --tokenizer with far fewer ids than the preset's vocabulary", "ttt-make-model",
                 ["--preset", "125m", "--dtype", "bf16", "--out", m125, "--tokenizer", gpt2], "--tokenizer",
                 "50257 ids", "fewer than half")
    check("and writes no model", not os.path.exists(os.path.join(m125, "tokenizer.json")))


@case
def prefill_memory(c):
    """Host memory on PoCL (where device buffers are host memory) stays within 1.3x of the device bytes ttt-bench
    reports, with CLBlast's defaults and with a tuning record that sends the GEMMs down CLBlast's indirect path (its
    padded temporaries), however many engines a run makes one after another (ttt-bench prefill makes one per run).
    The engines read the weights from their source as they upload them: a host copy of the 125m weights (737 MB)
    beside the device's made it 1.49x (2,249 MB for 1,512 MB); before the tools fixed glibc's mmap threshold, freed
    buffers stayed in PoCL's thread heaps as well (3,182 MB)."""
    if os.environ.get("ASAN_OPTIONS") or os.environ.get("LSAN_OPTIONS"):
        # A sanitizer's shadow memory and quarantine are part of the RSS: nothing to compare with.
        print("skip  peak RSS under a sanitizer")
        results["skipped"] = results.get("skipped", 0) + 1
        return
    # A record for this device and driver (no tuners: seconds), then CLBlast's indirect GEMM for every size.
    record = os.path.join(c.tmp, "prefill-memory-tuning.json")
    rc, _, se = run("ttt-bench", "tune", "--preset", "tiny", "--no-tuners", "--out", record)
    check("ttt-bench tune --no-tuners writes a record", rc == 0 and os.path.exists(record), se[-300:])
    if rc != 0:
        return
    rec = json.load(open(record))
    for d in rec["devices"]:
        d["kernels"]["GemmRoutine"] = {"XGEMM_MIN_INDIRECT_SIZE": 64}
    json.dump(rec, open(record, "w"))
    args = ["prefill", "--preset", "125m", "--tokens", "130", "--only", "no-ttt", "--no-ceiling", "--no-profile",
            "--repeat", "2"]
    run("ttt-bench", *args)  # the kernels compiled and cached: compilation's own memory is not what this measures
    for label, tuning in (("without a tuning record", "off"), ("with a tuning record", record)):
        rc, so, se = run("ttt-bench", *args, env={"TTT_TUNING_FILE": tuning})
        j = json.loads(so) if rc == 0 else {}
        device, peak = j.get("device_mb", 0), j.get("peak_rss_mb", 0)
        check(f"ttt-bench prefill 125m {label}: peak RSS {peak:.0f} MB <= 1.3 x device {device:.0f} MB "
              f"({1.3 * device:.0f} MB)", rc == 0 and device > 0 and 0 < peak <= 1.3 * device, se[-400:])


@case
def niah(c):
    """ttt-niah: S-NIAH on the bundled byte-level model (JSON shape and counts, the same seed gives the same JSON, a
    three-mode run equals the modes run one by one, one SVG cell per context and depth and mode), a golden model
    without a tokenizer is a clear error, and bad options are usage errors naming the flag."""
    import xml.etree.ElementTree as ET
    root = os.path.dirname(os.path.dirname(os.path.abspath(DATA)))
    model = os.path.join(root, "models", "kjv-bytes")
    rc, out, _ = run("ttt-niah", "--help")
    flags = ["--model", "--contexts", "--depths", "--trials", "--needle", "--modes", "--haystack", "--seed", "--json",
             "--plot", "--device", "--weight-dtype"]
    check("ttt-niah --help", rc == 0 and all(f in out for f in flags), out[:300])
    hay = os.path.join(c.tmp, "niah-hay.txt")
    with open(hay, "w") as f:
        f.write("In the beginning God created the heaven and the earth. And the earth was without form, and void.\n")

    def niah_run(name, *args):
        js = os.path.join(c.tmp, name + ".json")
        p = subprocess.run([exe("ttt-niah"), "-m", model, "--contexts", "256,512", "--depths", "0.25,0.75",
                            "--trials", "1", "--json", js, *args], capture_output=True, timeout=600)
        err = p.stderr.decode(errors="replace")
        try:
            j = json.load(open(js)) if p.returncode == 0 else None
        except (OSError, ValueError) as e:
            j, err = None, err + repr(e)
        return p.returncode, j, err

    svg = os.path.join(c.tmp, "niah.svg")
    rc, j, err = niah_run("all", "--needle", "all", "--modes", "ttt,swa,full", "--seed", "7", "--plot", svg)
    res = j["results"] if j else []
    keys = {"mode", "needle", "context", "depth", "trials", "correct", "accuracy"}
    ok = rc == 0 and len(res) == 3 * 3 * 2 * 2 and all(set(r) >= keys for r in res)
    ok = ok and {(r["mode"], r["needle"], r["context"], r["depth"]) for r in res} == {
        (m, n, ctx, d) for m in ("ttt", "swa", "full") for n in (1, 2, 3) for ctx in (256, 512) for d in (0.25, 0.75)}
    ok = ok and all(r["trials"] == 1 and 0 <= r["correct"] <= 1 and 0 <= r["accuracy"] <= 1 for r in res)
    ok = ok and j["seed"] == 7 and j["contexts"] == [256, 512] and j["depths"] == [0.25, 0.75] and j["trials"] == 1
    check("ttt-niah --json: one result per mode, needle, context and depth, with counts", ok, (str(j)[:400], err[-400:]))
    # prompt_tokens is one prompt's length (the mean of a cell's), not the sum over its trials.
    def trials_run(n):
        js = os.path.join(c.tmp, f"trials{n}.json")
        p = subprocess.run([exe("ttt-niah"), "-m", model, "--contexts", "256,512", "--depths", "0.25,0.75", "--trials",
                            str(n), "--json", js, "--needle", "1", "--modes", "swa", "--seed", "7", "-q"],
                           capture_output=True, text=True, timeout=600)
        return p.returncode, json.load(open(js)) if p.returncode == 0 else None, p.stderr

    rc4, j4, err4 = trials_run(3)
    rc5, j5, err5 = trials_run(1)
    ok = rc4 == rc5 == 0 and all(0.9 * r5["prompt_tokens"] <= r4["prompt_tokens"] <= r4["context"]
                                 for r4, r5 in zip(j4["results"], j5["results"]))
    check("ttt-niah: prompt_tokens is a prompt's length, whatever --trials", ok, (str(j4)[-300:], err4[-300:]))
    p = subprocess.run([exe("ttt-niah"), "-m", model, "--contexts", "256", "--depths", "0.5", "--trials", "1",
                        "--modes", "swa", "--needle", "1"], capture_output=True, text=True, timeout=600)
    lines = p.stdout.splitlines()
    ok = p.returncode == 0 and len(lines) == 2 and lines[0].split()[:3] == ["mode", "needle", "context"]
    ok = ok and lines[1].split()[:3] == ["swa", "1", "256"] and "1 prompt (" in p.stderr
    check("ttt-niah prints its table on stdout (a row per cell); '1 prompt'", ok, (p.stdout + p.stderr)[-400:])
    try:
        tree = ET.parse(svg).getroot()
        panels = [g for g in tree.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "panel"]
        cells = [[r for r in g.iter("{http://www.w3.org/2000/svg}rect") if r.get("class") == "cell"] for g in panels]
        ok, detail = len(panels) == 3 and all(len(x) == 2 * 2 for x in cells), [len(x) for x in cells]
    except (OSError, ET.ParseError) as e:
        ok, detail = False, repr(e)
    check("ttt-niah --plot: well-formed SVG, a panel per mode with a cell per context and depth", ok, str(detail))

    def strip(j):
        return {k: v for k, v in (j or {}).items() if k != "seconds"}

    rc2, j2, err2 = niah_run("again", "--needle", "all", "--modes", "ttt,swa,full", "--seed", "7", "-q")
    check("ttt-niah: the same seed gives the same JSON", rc2 == 0 and strip(j2) == strip(j) and err2.strip() == "",
          err2[-400:])
    rc3, j3, err3 = niah_run("other-seed", "--needle", "all", "--modes", "ttt,swa,full", "--seed", "8", "-q")
    check("ttt-niah: another seed gives other prompts (their token counts)",
          rc3 == 0 and [r["prompt_tokens"] for r in j3["results"]] != [r["prompt_tokens"] for r in res]
          and all(r["prompt_tokens"] <= r["context"] for r in res), err3[-400:])
    by_mode = []
    for m in ("ttt", "swa", "full"):
        rcm, jm, errm = niah_run("one-" + m, "--needle", "all", "--modes", m, "--seed", "7", "-q")
        by_mode += jm["results"] if rcm == 0 and jm else [errm[-300:]]
    check("ttt-niah --modes ttt,swa,full equals the three modes run one by one", by_mode == res, str(by_mode)[:400])
    rc, jh, err = niah_run("hay", "--needle", "3", "--haystack", hay, "--seed", "1")
    check("ttt-niah --haystack FILE --needle 3", rc == 0 and len(jh["results"]) == 4 and jh["haystack"] == hay
          and jh["modes"] == "ttt", err[-400:])
    # Ctrl-C: the prompt in flight ends, the cells completed are written (whole cells only), exit 130.
    import signal
    js, sp = os.path.join(c.tmp, "niah-int.json"), os.path.join(c.tmp, "niah-int.svg")
    p = subprocess.Popen([exe("ttt-niah"), "-m", model, "--contexts", "512", "--depths", "0,0.25,0.5,0.75,1",
                          "--trials", "20", "--needle", "1", "--json", js, "--plot", sp], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    head = p.stderr.readline() + p.stderr.readline()  # the header, then the first progress line (10%)
    p.send_signal(signal.SIGINT)
    _, se = p.communicate(timeout=600)
    try:
        j = json.load(open(js))
        ET.parse(sp)
        ok = p.returncode == 130 and j["partial"] is True and "interrupted" not in j and len(j["results"]) < 5
        ok = ok and all(r["trials"] == 20 for r in j["results"]) and "interrupted after" in se
    except (OSError, ValueError, KeyError, ET.ParseError) as e:
        ok, se = False, se + repr(e)
    check("ttt-niah on Ctrl-C writes the cells completed and exits 130", ok, f"exit {p.returncode}, {(head + se)[-500:]}")
    golden = os.path.join(GOLDEN, "tiny")
    expect_error("ttt-niah on a golden model without a tokenizer names the model and the tokenizer", "ttt-niah",
                 ["-m", golden, "--contexts", "64", "--depths", "0.5", "--trials", "1"], "no tokenizer", golden, code=1)
    # A golden model runs too: partial-chunk (vocab 256, B 32, W 64) read through the built-in byte tokenizer.
    gold = os.path.join(c.tmp, "niah-golden")
    shutil.copytree(os.path.join(GOLDEN, "partial-chunk"), gold)
    with open(os.path.join(gold, "config.json")) as f:
        cfg = json.load(f)
    cfg["tokenizer"] = "bytes"
    with open(os.path.join(gold, "config.json"), "w") as f:
        json.dump(cfg, f)
    gj = os.path.join(c.tmp, "niah-golden.json")
    p = subprocess.run([exe("ttt-niah"), "-m", gold, "--contexts", "200", "--depths", "0.25,0.75", "--trials", "1",
                        "--modes", "ttt,swa", "--json", gj, "-q"], capture_output=True, text=True, timeout=600)
    try:
        res = json.load(open(gj))["results"]
        ok = p.returncode == 0 and len(res) == 2 * 2 * 3 and all(0 <= r["accuracy"] <= 1 for r in res)
    except (OSError, ValueError, KeyError) as e:
        ok, res = False, repr(e)
    check("ttt-niah runs on a golden model (partial-chunk through the byte tokenizer)", ok,
          f"exit {p.returncode}: {p.stderr[-400:]} {str(res)[:200]}")
    m = ["-m", model]
    for args, frag in ((["--contexts", "256,x"], "--contexts"), (["--contexts", "10"], "--contexts"),
                       (["--depths", "1.5"], "--depths"), (["--depths", ""], "--depths"),
                       (["--trials", "0"], "--trials"), (["--needle", "4"], "--needle"),
                       (["--modes", "ttt,nope"], "--modes"), (["--weight-dtype", "f8"], "--weight-dtype"),
                       (["--modes", "swa", "--inner-lr", "0.5"], "--inner-lr"),
                       (["--json", os.path.join(c.tmp, "no", "such", "dir", "x.json")], "--json")):
        expect_error(f"ttt-niah {' '.join(args)[:40]} is refused, naming {frag}", "ttt-niah", m + args, frag,
                     code=1 if frag == "--json" else 2)
    expect_error("ttt-niah --haystack of a missing file names it", "ttt-niah",
                 m + ["--haystack", os.path.join(c.tmp, "missing.txt")], "--haystack", "missing.txt")
    # The conventions of every tool (flag_conventions): --version, --device '' exits 2, a missing model exits 1.
    version = version_of_project()
    rc, so, se = run("ttt-niah", "--version")
    check(f"ttt-niah --version prints {version}", rc == 0 and so.strip() == f"ttt-niah (ttt-cl) {version}", so + se)
    expect_error("ttt-niah --device '' is a usage error", "ttt-niah", m + ["--device", ""], "--device", code=2)
    expect_error("ttt-niah -m of a missing directory exits 1, naming it", "ttt-niah",
                 ["-m", os.path.join(c.tmp, "no-such-model")], "no-such-model", code=1)


@case
def kv_dtype(c):
    """--kv-dtype f32|f16 in every tool that runs a model: listed by --help, bf16 or a typo is a usage error naming
    the flag; f16 rings on a golden case stay within 1e-2 of its NLLs yet differ from the f32 run, and the header line
    says so; ttt-bench reports kv_dtype and fewer device bytes."""
    for tool, args in [("ttt-perplexity", []), ("ttt-generate", []), ("ttt-niah", []), ("ttt-bench", ["prefill"]),
                       ("ttt-bench", ["decode"])]:
        rc, out, _ = run(tool, *args, "--help")
        check(f"{tool} {' '.join(args)} --help lists --kv-dtype", rc == 0 and "--kv-dtype" in out and "f16" in out,
              out[-300:])
    med = os.path.join(GOLDEN, "medium")
    toks = os.path.join(med, "tokens.txt")
    for bad in ("bf16", "f8"):
        expect_error(f"--kv-dtype {bad} is refused, naming the flag", "ttt-perplexity",
                     ["-m", med, "--tokens", toks, "--kv-dtype", bad], "--kv-dtype", bad, code=2)
    expect_error("ttt-generate --kv-dtype f64 is refused", "ttt-generate", ["-m", med, "-p", "x", "--kv-dtype", "f64"],
                 "--kv-dtype", code=2)
    got = {}
    for kv in ("f32", "f16"):
        out = os.path.join(c.tmp, f"kv-{kv}.txt")
        rc, _, se = run("ttt-perplexity", "-m", med, "--tokens", toks, "--nll-out", out, "--kv-dtype", kv)
        got[kv] = floats(out) if rc == 0 else []
        check(f"ttt-perplexity --kv-dtype {kv}: the header line says '{kv} kv'", rc == 0 and f"{kv} kv" in se,
              se[-400:])
    want = floats(os.path.join(med, "nll_ttt.txt"))
    diff = max((abs(a - b) for a, b in zip(got["f16"], want)), default=1e9)
    check(f"golden medium with f16 keys and values within 1e-2 (max diff {diff:.2e}), not the f32 numbers",
          len(got["f16"]) == len(want) and diff <= 1e-2 and got["f16"] != got["f32"])
    bench = {}
    for kv in ("f32", "f16"):
        rc, so, se = run("ttt-bench", "decode", "--preset", "tiny", "--contexts", "64", "--tokens", "2", "--modes",
                         "swa", "--no-bandwidth", "--kv-dtype", kv)
        bench[kv] = json.loads(so) if rc == 0 else {}
        check(f"ttt-bench decode --kv-dtype {kv} reports it", bench[kv].get("kv_dtype") == kv, se[-400:])
    b16, b32 = (bench[k].get("device_bytes", {}).get("swa", 0) for k in ("f16", "f32"))
    check(f"ttt-bench decode: f16 rings take fewer device bytes ({b16} < {b32})", 0 < b16 < b32)
    rc, so, se = run("ttt-bench", "prefill", "--preset", "tiny", "--tokens", "40", "--only", "ttt", "--no-ceiling",
                     "--no-profile", "--no-warmup", "--kv-dtype", "f16", "--weight-dtype", "bf16", "--parallel", "2",
                     "--docs", "2")
    j = json.loads(so) if rc == 0 else {}
    check("ttt-bench prefill --kv-dtype f16 --weight-dtype bf16 reports both, and --parallel takes them too",
          j.get("kv_dtype") == "f16" and j.get("weight_dtype") == "bf16"
          and j.get("parallel_ttt", {}).get("runs", [{}])[0].get("max_abs_nll_diff", 1) <= 1e-5, se[-400:])


@case
def storage_on_record(c):
    """The storage types a run used are on record: ttt-perplexity's report ('storage') and JSON settings, ttt-generate's
    and ttt-niah's JSON (weight_dtype, kv_dtype); a --journal of other storage types is refused on --resume (its
    numbers would be reported as this run's)."""
    made, med, toks = c.made(), c.med, c.mtoks
    for w, kv in (("auto", "f32"), ("bf16", "f16")):
        want_w = "f32" if w == "auto" else w
        jp = os.path.join(c.tmp, f"storage-{w}.json")
        rc, so, se = run("ttt-perplexity", "-m", med, "--tokens", toks, "--weight-dtype", w, "--kv-dtype", kv, "--json",
                         jp, "-q")
        st = json.load(open(jp))["settings"] if rc == 0 else {}
        check(f"ttt-perplexity --weight-dtype {w} --kv-dtype {kv}: report and JSON say {want_w} weights, {kv} kv",
              rc == 0 and re.search(rf"storage +{want_w} weights, {kv} kv", so) is not None
              and st.get("weight_dtype") == want_w and st.get("kv_dtype") == kv, (so + se)[-400:])
        jp = os.path.join(c.tmp, f"storage-gen-{w}.json")
        rc, _, se = run("ttt-generate", "-m", made, "-p", "abc", "-n", "2", "-q", "--weight-dtype", w, "--kv-dtype", kv,
                        "--json", jp)
        j = json.load(open(jp)) if rc == 0 else {}
        check(f"ttt-generate --weight-dtype {w} --kv-dtype {kv}: the JSON says so",
              j.get("weight_dtype") == want_w and j.get("kv_dtype") == kv, se[-300:])
        jp = os.path.join(c.tmp, f"storage-niah-{w}.json")
        rc, _, se = run("ttt-niah", "-m", made, "--contexts", "200", "--depths", "0", "--trials", "1", "--needle", "1",
                        "-q", "--weight-dtype", w, "--kv-dtype", kv, "--json", jp)
        j = json.load(open(jp)) if rc == 0 else {}
        check(f"ttt-niah --weight-dtype {w} --kv-dtype {kv}: the JSON says so",
              j.get("weight_dtype") == want_w and j.get("kv_dtype") == kv, se[-300:])
    journal = os.path.join(c.tmp, "storage.journal")
    rc, _, se = run("ttt-perplexity", "-m", med, "--tokens", toks, "--journal", journal, "-q")
    check("storage: an f32 run writes its journal", rc == 0, se[-300:])
    for flags in (["--weight-dtype", "bf16"], ["--kv-dtype", "f16"]):
        rc, _, se = run("ttt-perplexity", "-m", med, "--tokens", toks, "--journal", journal, "--resume", *flags)
        check(f"--resume {' '.join(flags)} of an f32 run's journal is refused", rc == 1 and re.search(
            r"error: .*storage.journal: journal written for another model or other options", se), se[-400:])
    rc, _, se = run("ttt-perplexity", "-m", med, "--tokens", toks, "--journal", journal, "--resume", "--weight-dtype",
                    "f32", "-q")
    check("--resume --weight-dtype f32 (what auto gave) continues the f32 journal", rc == 0, se[-300:])


@case
def usage_before_model(c):
    """A bad option value is a usage error (exit 2, naming the flag) found before the model loads: the storage flags
    of every tool that runs a model (with a model directory that does not exist, whose error would come first
    otherwise), and ttt-bench's options (checked after the model loaded, some after minutes of timing, and exit 1)."""
    missing = os.path.join(c.tmp, "no-such-model")
    tools = [("ttt-perplexity", ["--tokens", c.tokens]), ("ttt-generate", ["-p", "x"]), ("ttt-niah", []),
             ("ttt-bench", ["prefill"]), ("ttt-bench", ["decode"])]
    for tool, args in tools:
        for flag in ("--weight-dtype", "--kv-dtype"):
            sub = args[:1] if tool == "ttt-bench" else []
            rest = args[1:] if tool == "ttt-bench" else args
            expect_error(f"{tool} {' '.join(sub)} {flag} f8 before the model loads", tool,
                         [*sub, "-m", missing, *rest, flag, "f8"], flag, "f8", code=2)
    for args, flag in ((["decode", "--preset", "tiny", "--fill", "x"], "--fill"),
                       (["decode", "--preset", "tiny", "--matvec", "x"], "--matvec"),
                       (["decode", "--preset", "tiny", "--modes", "ttt,x"], "--modes"),
                       (["decode", "--preset", "tiny", "--contexts", "0"], "--contexts"),
                       (["decode", "--preset", "tiny", "-m", missing], "--preset"),
                       (["prefill", "--preset", "tiny", "--repeat", "0"], "--repeat"),
                       (["prefill", "--preset", "tiny", "--parallel", "x"], "--parallel"),
                       (["prefill", "--preset", "tiny", "--parallel", "2", "--docs", "0"], "--docs")):
        rc, _, se = run("ttt-bench", *args)
        check(f"ttt-bench {' '.join(args)}: a usage error before the model loads", rc == 2 and flag in se
              and "loading" not in se and se.startswith("ttt-bench: error: "), f"exit {rc}: {se[-300:]}")


@case
def own_formats_only(c):
    """--save-session and --kl-divergence-base (written) replace an existing file only when it is one of theirs (the
    TTT-SES / TTT-KLD header): a user's file of that name is refused before any work and left as it was; a file the
    tool wrote is replaced, and so is an empty one."""
    made, doc = c.made(), c.long_doc()
    notes = c.token_file("notes.txt", "my notes, not a session")
    for tool, args in (("ttt-generate", ["-p", "abc", "-n", "2", "--save-session", notes]),
                       ("ttt-perplexity", ["-f", doc, "--max-tokens", "100", "--save-session", notes]),
                       ("ttt-perplexity", ["-f", doc, "--max-tokens", "100", "--kl-divergence-base", notes])):
        flag = args[-2]
        rc, so, se = run(tool, "-m", made, "-q", *args)
        check(f"{tool} {flag} onto a user's file is refused, the file untouched",
              rc == 1 and se.startswith(f"{tool}: error: {flag} {notes}: the file exists and is not") and so == ""
              and untouched(notes, "my notes, not a session"), se[-300:])
    for flag, name in (("--save-session", "own.ses"), ("--kl-divergence-base", "own.kld")):
        path = os.path.join(c.tmp, name)
        open(path, "w").close()  # empty: nothing to lose
        tool_args = ["-f", doc, "--max-tokens", "100", flag, path]
        rc1, _, se1 = run("ttt-perplexity", "-m", made, "-q", *tool_args)
        first = open(path, "rb").read() if rc1 == 0 else b""
        rc2, _, se2 = run("ttt-perplexity", "-m", made, "-q", "-f", doc, "--max-tokens", "90", flag, path)
        again = open(path, "rb").read() if rc2 == 0 else b""
        check(f"ttt-perplexity {flag}: an empty file, then the tool's own, are replaced",
              rc1 == rc2 == 0 and first[:4] == b"TTT-" and again[:4] == b"TTT-" and first != again, (se1 + se2)[-300:])


def stale_copy(path):
    """Marks a file a tool wrote, keeping its signature (JSON: one more key; text: one more line at the end), so a
    later run that replaces it can be told from one that left it alone."""
    with open(path) as f:
        text = f.read()
    if text.lstrip().startswith("{"):
        j = json.loads(text)
        j["stale"] = True
        text = json.dumps(j)
    else:
        text += "stale\n"
    with open(path, "w") as f:
        f.write(text)
    return text


@case
def own_outputs_edges(c):
    """The own-file rule's edges: a FIFO or device named as an output is written through, never replaced by a regular
    file (as root, --json /dev/null used to replace /dev/null); a replaced own file keeps its mode (a private 0600 one
    stays private); the signature is the first line (the second after an SVG's XML declaration), and a JSON
    "written_by" is "TOOL VERSION (ttt-cl)", not any string starting with the tool's name; a folder of documents
    skips a tool's signed text output whatever its name (it used to score a --nll-out nll.txt as a document); an
    interrupted ttt-generate replaces no existing --save-session (its session goes to FILE.partial)."""
    import stat
    import threading
    made, doc, tmp = c.made(), c.long_doc(), c.tmp
    base = ["-m", made, "-q", "-f", doc, "--max-tokens", "100"]
    fifo = os.path.join(tmp, "edges.fifo")
    if os.path.exists(fifo):
        os.remove(fifo)
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()), daemon=True)
    reader.start()
    rc, _, se = run("ttt-perplexity", *base, "--nll-out", fifo)
    reader.join(timeout=60)
    check("--nll-out onto a FIFO writes through it and leaves it a FIFO",
          rc == 0 and stat.S_ISFIFO(os.stat(fifo).st_mode) and got and got[0].startswith("# written by ttt-perplexity")
          and len(got[0].splitlines()) == 100, se[-300:])
    priv = os.path.join(tmp, "edges-priv.json")
    if os.path.exists(priv):
        os.remove(priv)
    run("ttt-perplexity", *base, "--json", priv)
    os.chmod(priv, 0o600)
    rc, _, se = run("ttt-perplexity", *base, "--json", priv)
    check("a replaced own file keeps its mode (0600 stays 0600)",
          rc == 0 and stat.S_IMODE(os.stat(priv).st_mode) == 0o600, f"{oct(os.stat(priv).st_mode)} {se[-300:]}")
    quoted = "my notes\n# written by ttt-perplexity 0.1.0 (ttt-cl): quoted on line two\n"
    loose = '{"written_by": "ttt-perplexity is what I ran, by hand"}\n'
    for name, text, flag in (("edges-quoted.txt", quoted, "--nll-out"), ("edges-loose.json", loose, "--json")):
        user = c.token_file(name, text)
        rc, _, se = run("ttt-perplexity", *base, flag, user)
        check(f"{flag}: a user's file that merely quotes the signature ({name}) is refused and left as it was",
              rc == 1 and "so this tool did not write it" in se and untouched(user, text), se[-300:])
    folder = os.path.join(tmp, "edges-docs")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    shutil.copy(doc, os.path.join(folder, "a.txt"))
    nll = os.path.join(folder, "nll.txt")
    rc1, so1, se1 = run("ttt-perplexity", "-m", made, "-f", folder, "--max-tokens", "100", "--nll-out", nll)
    rc2, so2, se2 = run("ttt-perplexity", "-m", made, "-f", folder, "--max-tokens", "100", "--nll-out", nll)
    ppl = lambda so: [l for l in so.splitlines() if l.startswith("PPL = ")]  # (the table's widths follow its tok/s)
    check("a folder's signed --nll-out (nll.txt) is skipped, not scored: the re-run scores the same one document",
          rc1 == rc2 == 0 and ppl(so1) and ppl(so1) == ppl(so2) and "1 document," in se2 and "skipped" in se2
          and nll in se2, (so2 + se1 + se2)[-600:])
    ses = os.path.join(tmp, "edges.ses")
    for f in (ses, ses + ".partial"):
        if os.path.exists(f):
            os.remove(f)
    rc, _, se = run("ttt-generate", "-m", made, "-q", "-p", "abc", "-n", "3", "--save-session", ses)
    before = open(ses, "rb").read() if rc == 0 else b""
    for delay in (0.5, 1.5, 4):  # after the header, until the interrupt lands in the generation (not the set-up)
        p = subprocess.Popen([exe("ttt-generate"), "-m", made, "-p", "abc", "-n", "1000000", "--save-session", ses],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        head = p.stderr.readline()
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        err = head + p.communicate(timeout=600)[1]
        if os.path.exists(ses + ".partial"):
            break
    check("an interrupted ttt-generate keeps the existing --save-session and writes FILE.partial",
          rc == 0 and p.returncode == 130 and open(ses, "rb").read() == before and os.path.exists(ses + ".partial")
          and open(ses + ".partial", "rb").read(8) == b"TTT-SES\n" and "kept (the run was interrupted)" in err,
          err[-400:])


@case
def own_outputs_only(c):
    """Every output file of every tool is replaced only when it is empty or this tool wrote it: JSON with
    "written_by": "TOOL ...", an SVG with its "<!-- written by TOOL" comment, --nll-out with its "# written by
    ttt-perplexity" first line (ttt-bench tune --out: a tuning file, --save-session and --kl-divergence-base: their
    headers, own_formats_only). A user's file of that name, a JSON document that is not the tool's, and a user's file
    named as an output's .partial are refused before any work (exit 1, naming the flag, the path and what is
    missing) and left byte for byte; ttt-tokenize -o, whose ids and text cannot carry a mark, replaces no file."""
    made, doc, tmp = c.made(), c.long_doc(), c.tmp
    kjv = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(DATA))), "models", "kjv-bytes")
    mine = "my notes, not an output\n"
    perplexity = ["-m", made, "-q", "-f", doc, "--max-tokens", "100"]
    niah = ["-m", kjv, "-q", "--contexts", "256", "--depths", "0.5", "--trials", "1", "--needle", "1", "--modes", "swa"]
    prefill = ["prefill", "--preset", "tiny", "--tokens", "40", "--only", "no-ttt", "--no-ceiling", "--no-peak",
               "--no-profile", "--no-warmup"]
    decode = ["decode", "--preset", "tiny", "--contexts", "64", "--tokens", "2", "--modes", "swa", "--no-bandwidth"]
    train = ["train", "--preset", "tiny", "--seq-len", "32", "--docs", "1", "--reference-docs", "0"]
    outputs = [("ttt-perplexity", perplexity, "--json", '"written_by": "ttt-perplexity '),
               ("ttt-perplexity", perplexity, "--nll-out", "# written by ttt-perplexity "),
               ("ttt-perplexity", perplexity, "--plot", "<!-- written by ttt-perplexity "),
               ("ttt-generate", ["-m", made, "-q", "-p", "abc", "-n", "2"], "--json", '"written_by": "ttt-generate '),
               ("ttt-niah", niah, "--json", '"written_by": "ttt-niah '),
               ("ttt-niah", niah, "--plot", "<!-- written by ttt-niah "),
               ("ttt-bench", prefill, "--json", '"written_by": "ttt-bench '),
               ("ttt-bench", decode, "--json", '"written_by": "ttt-bench '),
               ("ttt-bench", decode, "--plot", "<!-- written by ttt-bench "),
               ("ttt-bench", train, "--json", '"written_by": "ttt-bench ')]
    for i, (tool, args, flag, mark) in enumerate(outputs):
        what = f"{tool}{' ' + args[0] if tool == 'ttt-bench' else ''} {flag}"
        user = c.token_file(f"own-{i}.user", mine)
        rc, so, se = run(tool, *args, flag, user)
        check(f"{what} onto a user's file is refused before any work, the file untouched",
              rc == 1 and se.startswith(f"{tool}: error: {flag} {user}: the file exists and is not")
              and "so this tool did not write it" in se and so == "" and untouched(user, mine), se[-400:])
        path = os.path.join(tmp, f"own-{i}.out")
        open(path, "w").close()  # empty: nothing to lose
        rc1, _, se1 = run(tool, *args, flag, path)
        first = open(path).read()
        stale = stale_copy(path) if rc1 == 0 else ""
        rc2, _, se2 = run(tool, *args, flag, path)
        again = open(path).read()
        check(f"{what}: an empty file, then the tool's own, are replaced (signature {mark!r})",
              rc1 == rc2 == 0 and mark in first and mark in again and "stale" in stale and "stale" not in again,
              (se1 + se2)[-400:])

    for args in (["tune", "--preset", "tiny", "--no-tuners", "--dry-run"], ["compare", "--preset", "tiny"]):
        user = c.token_file(f"own-{args[0]}.user", mine)
        rc, so, se = run("ttt-bench", *args, "--json", user)
        check(f"ttt-bench {args[0]} --json onto a user's file is refused before any work, the file untouched",
              rc == 1 and se.startswith(f"ttt-bench: error: --json {user}: the file exists and is not") and so == ""
              and untouched(user, mine), se[-400:])

    # JSON that is not the tool's: valid JSON without the field, and another tool's record.
    plain = c.token_file("own-plain.json", '{"results": [1, 2, 3]}\n')
    rc, so, se = run("ttt-perplexity", *perplexity, "--json", plain)
    check("ttt-perplexity --json onto JSON without \"written_by\" is refused, untouched",
          rc == 1 and '"written_by"' in se and so == "" and untouched(plain, '{"results": [1, 2, 3]}\n'), se[-300:])
    generated = os.path.join(tmp, "own-3.out")  # ttt-generate's JSON, above
    before = open(generated).read()
    rc, so, se = run("ttt-perplexity", *perplexity, "--json", generated)
    check("ttt-perplexity --json onto ttt-generate's JSON is refused, untouched",
          rc == 1 and "ttt-perplexity" in se and so == "" and untouched(generated, before), se[-300:])
    # The partial results of an interrupted run go to PATH.partial: a user's file of that name is never replaced.
    report = os.path.join(tmp, "own-partial.json")
    user = c.token_file("own-partial.json.partial", mine)
    rc, so, se = run("ttt-perplexity", *perplexity, "--json", report)
    check("ttt-perplexity --json X with a user's X.partial is refused, untouched",
          rc == 1 and "--json (partial results)" in se and user in se and untouched(user, mine)
          and not os.path.exists(report), se[-300:])

    # ttt-tokenize -o: an empty file is replaced; any other, its own output included, is not.
    ids = os.path.join(tmp, "own-ids.txt")
    open(ids, "w").close()
    rc, _, se = run("ttt-tokenize", "-m", made, "-f", doc, "-o", ids)
    written = open(ids).read()
    check("ttt-tokenize -o onto an empty file writes it", rc == 0 and len(written.split()) > 100, se[-300:])
    for name, path, text in (("a user's file", c.token_file("own-tok.user", mine), mine), ("its own output", ids, written)):
        rc, so, se = run("ttt-tokenize", "-m", made, "-f", doc, "-o", path)
        check(f"ttt-tokenize -o onto {name} is refused, untouched",
              rc == 1 and se.startswith(f"ttt-tokenize: error: -o {path}: the file exists") and so == ""
              and untouched(path, text), se[-300:])


@case
def head_tiles(c):
    """--head-tiles in every tool that prefills: listed by --help; it reaches the engine (ttt-bench prefill: V x D
    floats more under a column-major GEMM plan, none under a row-major one) and changes no number; $TTT_HEAD_TILES
    overrides it, and a value other than on/off is an error naming the variable."""
    for tool, args in [("ttt-perplexity", []), ("ttt-niah", []), ("ttt-bench", ["prefill"])]:
        opts = help_options(run(tool, *args, "--help")[1])
        check(f"{tool} {' '.join(args)} --help explains --head-tiles",
              "device memory" in opts.get("--head-tiles", ""), str(opts.get("--head-tiles")))
    model = os.path.join(c.tmp, "head-tiles-tiny")
    rc, _, err = run("ttt-make-model", "--preset", "tiny", "--out", model)
    check("ttt-make-model --preset tiny for --head-tiles", rc == 0, err[-300:])
    cfg = json.load(open(os.path.join(model, "config.json"))) if rc == 0 else {}
    tiles = cfg.get("vocab_size", 0) * cfg.get("hidden_size", 0) * 4
    bench = {}
    for name, flags, env in [("off", [], None), ("on", ["--head-tiles"], None),
                             ("env off", ["--head-tiles"], {"TTT_HEAD_TILES": "off"}),
                             ("env on", [], {"TTT_HEAD_TILES": "on"})]:
        rc, so, se = run("ttt-bench", "prefill", "-m", model, "--tokens", "40", "--only", "no-ttt", "--no-ceiling",
                         "--no-peak", "--no-profile", "--no-warmup", *flags, env=env)
        bench[name] = json.loads(so) if rc == 0 else {}
        check(f"ttt-bench prefill --head-tiles ({name}) runs", rc == 0, se[-400:])
    col = bench["on"].get("gemm_plan", {}).get("col_major")
    want = tiles if col else 0
    for name, taken in [("off", False), ("on", True), ("env off", False), ("env on", True)]:
        got = bench[name].get("device_parts", {}).get("head tiles", 0) if bench[name] else -1  # no part: none
        check(f"ttt-bench prefill ({name}, col_major {col}): head tiles take {got} bytes, want "
              f"{want if taken else 0}", got == (want if taken else 0) and tiles > 0)
    check("ttt-bench prefill reports head_tiles as asked",
          bench["on"].get("head_tiles") is True and bench["off"].get("head_tiles") is False)
    check("ttt-bench prefill --head-tiles: device_bytes grow by the tiles alone",
          bench["on"].get("device_bytes", 0) - bench["off"].get("device_bytes", 0) == want)
    check("ttt-bench prefill --head-tiles: the same mean NLL",
          abs(bench["on"].get("no_ttt_mean_nll", 1) - bench["off"].get("no_ttt_mean_nll", 0)) <= 1e-6)
    med = os.path.join(GOLDEN, "medium")
    toks = os.path.join(med, "tokens.txt")
    got = {}
    for name, flags in [("off", []), ("on", ["--head-tiles"])]:
        out = os.path.join(c.tmp, f"head-tiles-{name}.txt")
        rc, _, se = run("ttt-perplexity", "-m", med, "--tokens", toks, "--nll-out", out, *flags)
        got[name] = floats(out) if rc == 0 else []
        check(f"ttt-perplexity golden medium, head tiles {name}", rc == 0, se[-400:])
    diff = max((abs(a - b) for a, b in zip(got["on"], got["off"])), default=1e9)
    check(f"ttt-perplexity --head-tiles: the same NLLs (max diff {diff:.2e})",
          len(got["on"]) == len(got["off"]) > 0 and diff <= 1e-5)
    rc, _, se = run("ttt-perplexity", "-m", med, "--tokens", toks, env={"TTT_HEAD_TILES": "yes"})
    check("$TTT_HEAD_TILES=yes is refused, naming it", rc == 1 and "ttt-perplexity: error: $TTT_HEAD_TILES='yes'" in se,
          se[-400:])


def main():
    """test_cli.py BIN_DIR DATA_DIR [--list | CASE...]: the named cases (ctest runs
    each as its own entry), or all of them."""
    names = sys.argv[3:]
    if names == ["--list"]:
        print("\n".join(CASES))
        return 0
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"unknown case(s) {unknown}; the cases are: {', '.join(CASES)}")
        return 2
    tmp = tempfile.mkdtemp(prefix="ttt_cli_")
    try:
        c = Fixtures(tmp)
        for name in names or CASES:
            print(f"== {name}")
            try:
                CASES[name](c)
            except Exception as e:  # a case that crashes is a failed check, and the others still run
                check(f"{name} ran to the end", False, repr(e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{results['passed']} passed, {results['failed']} failed")
    if not results["failed"] and not results["passed"] and results.get("skipped"):
        return 77  # ctest: skipped
    return 1 if results["failed"] or not results["passed"] else 0

if __name__ == "__main__":
    sys.exit(main())
