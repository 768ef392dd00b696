#!/usr/bin/env python3
"""Checks ttt-tokenize against the reference tokenizers on the test corpus.

For both vocabularies (llama3, gpt2) and both file formats it encodes every
corpus file with ttt-tokenize and with the reference (HF `tokenizers` for
tokenizer.json, tiktoken for tokenizer.model), plain and with --parse-special,
compares the ids exactly and checks that --decode gives the file back.
Exit 0 all equal, 1 on any difference, 77 (skip) without fixtures or modules.

Usage: tokenizer_oracle.py TTT_TOKENIZE [--fixtures DIR] [--corpus DIR]
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77
PATTERNS = {  # tiktoken files carry no regex: these are Meta's and GPT-2's
    "llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
}


def run_tool(tool, args, data):
    p = subprocess.run([tool] + args, input=data, capture_output=True)
    if p.returncode != 0:
        raise RuntimeError(f"{os.path.basename(tool)} {' '.join(args)} exited {p.returncode}: "
                           f"{p.stderr.decode(errors='replace').strip()}")
    return p.stdout


def encode_ours(tool, tok_path, data, parse_special):
    args = ["--tokenizer", tok_path] + (["--parse-special"] if parse_special else [])
    return [int(x) for x in run_tool(tool, args, data).split()]


def decode_ours(tool, tok_path, ids):
    return run_tool(tool, ["--tokenizer", tok_path, "--decode"], " ".join(map(str, ids)).encode())


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def report_mismatch(label, ours, ref, show):
    i = first_difference(ours, ref)
    lo = max(0, i - 4)
    print(f"FAIL {label}: {len(ours)} ids vs {len(ref)} in the reference; first difference at id {i}")
    print(f"  ours: ... {ours[lo:i + 6]}  {[show(t) for t in ours[lo:i + 6]]}")
    print(f"  ref : ... {ref[lo:i + 6]}  {[show(t) for t in ref[lo:i + 6]]}")


class Reference:
    """The reference encoder of one vocabulary and format, plain and parse_special."""

    def __init__(self, vocab, fmt, path, json_path):
        import tokenizers
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe

        self.fmt = fmt
        if fmt == "json":
            self.plain = tokenizers.Tokenizer.from_file(path)
            self.plain.encode_special_tokens = True  # special strings stay text
            self.parsing = tokenizers.Tokenizer.from_file(path)
            self.show = lambda i: self.parsing.id_to_token(i)
        else:
            # The specials a tiktoken loader must supply are those the
            # tokenizer.json of the same vocabulary lists.
            hf = tokenizers.Tokenizer.from_file(json_path)
            specials = {t.content: i for i, t in hf.get_added_tokens_decoder().items() if t.special}
            self.enc = tiktoken.Encoding(f"{vocab}-oracle", pat_str=PATTERNS[vocab],
                                         mergeable_ranks=load_tiktoken_bpe(path), special_tokens=specials)
            self.show = lambda i: self.enc.decode_single_token_bytes(i)

    def encode(self, text, parse_special):
        if self.fmt == "json":
            t = self.parsing if parse_special else self.plain
            return t.encode(text, add_special_tokens=False).ids
        if parse_special:
            return self.enc.encode(text, allowed_special="all")
        return self.enc.encode(text, disallowed_special=())


def check_cli(tool, fixtures):
    """The command line itself: help, errors, -m. Returns (passed, failed)."""
    gpt2 = os.path.join(fixtures, "gpt2", "tokenizer.json")
    checks = []

    def run(args, data=b""):
        return subprocess.run([tool] + args, input=data, capture_output=True)

    p = run(["--help"])
    checks.append(("--help explains every flag", p.returncode == 0 and all(
        f.encode() in p.stdout for f in ("--model", "--tokenizer", "--decode", "--parse-special"))))
    p = run([])
    checks.append(("no tokenizer given: one error line, exit != 0",
                   p.returncode != 0 and p.stderr.startswith(b"ttt-tokenize: error: ") and p.stderr.count(b"\n") == 1))
    p = run(["--tokenizer", gpt2, "--decode"], b"15496 50257")
    checks.append(("--decode with an id out of range names it",
                   p.returncode != 0 and b"ttt-tokenize: error: " in p.stderr and b"50257" in p.stderr))
    p = run(["--tokenizer", gpt2, "--decode"], b"15496 x")
    checks.append(("--decode with a non-number", p.returncode != 0 and b'"x"' in p.stderr))
    with tempfile.TemporaryDirectory() as d:
        p = run(["-m", d])
        checks.append(("-m on a directory without a tokenizer names both files", p.returncode != 0 and
                       b"tokenizer.json" in p.stderr and b"tokenizer.model" in p.stderr))
        os.symlink(os.path.abspath(gpt2), os.path.join(d, "tokenizer.json"))
        p = run(["-m", d], b"Hello world")
        checks.append(("-m DIR reads DIR/tokenizer.json", p.returncode == 0 and p.stdout == b"15496 995\n"))
    p = run(["--tokenizer", gpt2], b"")
    checks.append(("empty input gives an empty line", p.returncode == 0 and p.stdout == b"\n"))
    bad = [name for name, ok in checks if not ok]
    for name in bad:
        print(f"FAIL cli: {name}")
    print(f"cli: {len(checks) - len(bad)}/{len(checks)} checks pass")
    return len(checks) - len(bad), len(bad)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tool", help="path of the ttt-tokenize binary")
    ap.add_argument("--fixtures", default=os.path.join(HERE, "..", "..", "shared", "fixtures", "tokenizers"))
    ap.add_argument("--corpus", default=os.path.join(HERE, "data", "tokenizer-corpus"))
    args = ap.parse_args()

    if not os.path.isdir(args.fixtures):
        print(f"SKIP: no tokenizer fixtures at {os.path.normpath(args.fixtures)} (a clone without ../shared)")
        return SKIP
    try:
        import tiktoken  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as e:
        print(f"SKIP: reference tokenizers not importable ({e}); pip install tokenizers tiktoken")
        return SKIP

    files = sorted(f for f in os.listdir(args.corpus) if not f.startswith("."))
    corpus = {}
    for f in files:
        with open(os.path.join(args.corpus, f), "rb") as fh:
            corpus[f] = fh.read()
    print(f"corpus: {len(files)} files, {sum(map(len, corpus.values()))} bytes in {os.path.normpath(args.corpus)}")

    # Bytes the references cannot take: only the round trip is checked.
    # Random bytes, then every kind of ill-formed UTF-8 (stray continuation,
    # truncated sequences, overlong, surrogate, above U+10FFFF) amid text.
    rng = random.Random(1234)
    blobs = [bytes(rng.randrange(256) for _ in range(n)) for n in (1, 93, 4096)]
    blobs.append(b"\xff caf\xc3 \xe4\xb8 a\x80b \xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf \xe0\x80\x80 ok \xf0\x9f\x98 "
                 b"done\x00\x00\xfe\xff<|endoftext|>\xc3<|begin_of_text|>\x80 " + corpus[files[0]][:300] + b"\xf0\x9f")

    passed, failed = check_cli(args.tool, args.fixtures)
    for vocab in ("llama3", "gpt2"):
        json_path = os.path.join(args.fixtures, vocab, "tokenizer.json")
        for fmt, name in (("json", "tokenizer.json"), ("model", "tokenizer.model")):
            path = os.path.join(args.fixtures, vocab, name)
            ref = Reference(vocab, fmt, path, json_path)
            for parse_special in (False, True):
                mode = "parse-special" if parse_special else "plain"
                tokens = ok = 0
                for f in files:
                    label = f"{vocab}/{name} {mode} {f}"
                    try:
                        ours = encode_ours(args.tool, path, corpus[f], parse_special)
                        want = ref.encode(corpus[f].decode("utf-8"), parse_special)
                        if ours != want:
                            report_mismatch(label, ours, want, ref.show)
                            failed += 1
                            continue
                        back = decode_ours(args.tool, path, ours)
                        if back != corpus[f]:
                            i = first_difference(back, corpus[f])
                            print(f"FAIL {label}: decode differs from the file at byte {i}: "
                                  f"{back[max(0, i - 10):i + 10]!r} vs {corpus[f][max(0, i - 10):i + 10]!r}")
                            failed += 1
                            continue
                    except RuntimeError as e:
                        print(f"FAIL {label}: {e}")
                        failed += 1
                        continue
                    tokens += len(want)
                    ok += 1
                    passed += 1
                print(f"{vocab:6} {name:15} {mode:13}: {ok}/{len(files)} files equal, {tokens} tokens compared")
            bad = 0
            for b in blobs:
                try:
                    ids = encode_ours(args.tool, path, b, False)
                    if decode_ours(args.tool, path, ids) != b:
                        print(f"FAIL {vocab}/{name}: round trip of {b[:40]!r} differs")
                        bad += 1
                except RuntimeError as e:
                    print(f"FAIL {vocab}/{name}: round trip of {b[:40]!r}: {e}")
                    bad += 1
            print(f"{vocab:6} {name:15} invalid UTF-8: {len(blobs) - bad}/{len(blobs)} byte strings round-trip")
            passed += len(blobs) - bad
            failed += bad
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
