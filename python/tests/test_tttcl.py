"""The Python module tttcl against the library's own numbers: the golden cases
(tests/data/golden) equal to their float64 references and to ttt-perplexity's
--nll-out, greedy and seeded generation equal to ttt-generate, a document fed
in pieces equal to the whole, every error path as tttcl.Error, two models on
two threads, and a KeyboardInterrupt that leaves the model usable.

Environment: TTT_APPS_DIR (the built tools, for the CLI comparisons; those
tests skip without it). The data come from the repository this file is in."""
import os
import signal
import subprocess
import threading

import numpy as np
import pytest

import tttcl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(ROOT, "tests", "data", "golden")
KJV = os.path.join(ROOT, "models", "kjv-bytes")
GENESIS = os.path.join(ROOT, "data", "genesis-kjv.txt")
APPS = os.environ.get("TTT_APPS_DIR", "")
CASES = ["tiny", "partial-chunk", "bf16-weights", "medium"]


def golden_tokens(case):
    return np.array(open(os.path.join(GOLDEN, case, "tokens.txt")).read().split(), dtype=np.int32)


def floats(path, dtype=np.float64):
    return np.array([float(x) for x in open(path) if x.strip() and not x.startswith("#")], dtype=dtype)


def tool(name):
    exe = os.path.join(APPS, name)
    if not APPS or not os.path.exists(exe):
        pytest.skip(f"{name} not found: set TTT_APPS_DIR to the built tools")
    return exe


def cli_nll(tmp_path, *args):
    out = tmp_path / "nll.txt"
    subprocess.run([tool("ttt-perplexity"), *args, "--nll-out", str(out), "-q"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return floats(out, np.float32)


@pytest.fixture(scope="module")
def kjv():
    return tttcl.Model(KJV)


@pytest.fixture(scope="module")
def genesis():
    return open(GENESIS, encoding="utf-8").read()


@pytest.fixture(scope="module")
def models():
    return {c: tttcl.Model(os.path.join(GOLDEN, c)) for c in CASES}


def test_devices():
    devs = tttcl.devices()
    assert devs, "no OpenCL device"
    assert all(d.name and ":" in d.spec for d in devs)
    m = tttcl.Model(os.path.join(GOLDEN, "tiny"), device=0)
    assert m.device.spec == devs[0].spec
    assert tttcl.Model(os.path.join(GOLDEN, "tiny"), device=devs[0]).device.name == devs[0].name


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", ["ttt", "no-ttt"])
def test_golden_matches_reference_and_cli(models, tmp_path, case, mode):
    toks = golden_tokens(case)
    r = models[case].perplexity(toks, ttt=mode == "ttt")
    want = floats(os.path.join(GOLDEN, case, "nll_ttt.txt" if mode == "ttt" else "nll_no_ttt.txt"))
    assert r.nll.dtype == np.float32 and r.nll.shape == want.shape == (len(toks) - 1,)
    assert np.max(np.abs(r.nll - want)) <= 1e-3
    assert r.tokens == len(toks) - 1
    assert r.mean_nll == pytest.approx(float(np.mean(r.nll.astype(np.float64))), rel=1e-6)
    assert r.ppl == pytest.approx(np.exp(r.mean_nll), rel=1e-9) and r.ppl_err > 0
    # A list of ids is the same document.
    assert np.array_equal(models[case].perplexity(toks.tolist(), ttt=mode == "ttt").nll, r.nll)
    extra = ["--no-ttt"] if mode == "no-ttt" else []
    cli = cli_nll(tmp_path, "-m", os.path.join(GOLDEN, case), "--tokens", os.path.join(GOLDEN, case, "tokens.txt"),
                  *extra)
    assert np.array_equal(cli, r.nll), f"max diff {np.max(np.abs(cli - r.nll))}"


def test_options_match_cli(models, tmp_path):
    d = os.path.join(GOLDEN, "medium")
    toks = golden_tokens("medium")
    m = models["medium"]
    args = ["-m", d, "--tokens", os.path.join(d, "tokens.txt")]
    assert np.array_equal(m.perplexity(toks, full_attention=True).nll, cli_nll(tmp_path, *args, "--full-attention"))
    assert np.array_equal(m.perplexity(toks, inner_lr=0.5).nll, cli_nll(tmp_path, *args, "--inner-lr", "0.5"))
    assert np.array_equal(m.perplexity(toks, inner_lr=0.0).nll, m.perplexity(toks, ttt=False).nll)
    # full attention is not the sliding window on a document longer than W.
    assert not np.array_equal(m.perplexity(toks, full_attention=True).nll, m.perplexity(toks, ttt=False).nll)


def test_text_matches_cli(kjv, genesis, tmp_path):
    text = genesis[:3000]
    p = tmp_path / "doc.txt"
    p.write_text(text, encoding="utf-8")
    r = kjv.perplexity(text)
    assert r.tokens == len(text.encode()) - 1  # bytes, no BOS (the model has none)
    assert np.array_equal(r.nll, cli_nll(tmp_path, "-m", KJV, "-f", str(p)))
    assert np.array_equal(kjv.perplexity(kjv.tokenizer.encode(text, bos=True)).nll, r.nll)
    # With TTT the later tokens are predicted better than without on this held-out text.
    assert r.mean_nll < kjv.perplexity(text, ttt=False).mean_nll


def test_perplexity_many(models):
    m = models["medium"]
    toks = golden_tokens("medium")
    docs = [toks, toks[:300], toks[5:200], toks[:2]]
    one = [m.perplexity(d).nll for d in docs]
    for parallel in (1, 3):
        many = m.perplexity_many(docs, parallel=parallel)
        assert [r.tokens for r in many] == [len(d) - 1 for d in docs]
        for a, b in zip(many, one):
            if parallel == 1:
                assert np.array_equal(a.nll, b)
            else:
                assert np.allclose(a.nll, b, atol=1e-4, rtol=0)


@pytest.mark.parametrize("ttt", [True, False])
def test_feed_in_pieces_equals_whole(models, ttt):
    m = models["medium"]
    toks = golden_tokens("medium")
    whole = m.perplexity(toks, ttt=ttt).nll
    s = m.session(ttt=ttt)
    rng = np.random.default_rng(7)
    got, at = [], 0
    while at < len(toks):
        n = int(rng.choice([1, 7, 64, 93, 150]))
        got.append(s.feed(toks[at:at + n]))
        at += n
        assert s.position == min(at, len(toks))
        assert s.pending < m.mini_batch_size
    got.append(s.flush())
    assert np.array_equal(np.concatenate(got), whole)
    with pytest.raises(tttcl.Error, match="reset"):
        s.feed([1])
    # The same session again after reset, with logits() asked in the middle of mini-batches.
    s.reset()
    assert s.position == 0
    got = []
    for at in range(0, len(toks), 50):
        got.append(s.feed(toks[at:at + 50]))
        lg = s.logits()
        assert lg.shape == (m.vocab_size,) and np.all(np.isfinite(lg))
    got.append(s.flush())
    assert np.array_equal(np.concatenate(got), whole)


def test_logits_predict_the_scored_token(models):
    m = models["medium"]
    toks = golden_tokens("medium")
    B = m.mini_batch_size
    s = m.session()
    s.feed(toks[:B])  # B tokens: B - 1 targets known, nothing scored yet
    lg = s.logits().astype(np.float64)
    nll = np.log(np.sum(np.exp(lg - lg.max()))) + lg.max() - lg[toks[B]]
    got = s.feed(toks[B:B + 1])  # completes the first mini-batch (replayed)
    assert got.shape == (B,)
    assert got[-1] == pytest.approx(nll, abs=1e-4)


@pytest.mark.parametrize("ttt", [True, False])
def test_session_save_load_continues(models, tmp_path, ttt):
    m = models["medium"]
    toks = golden_tokens("medium")
    B = m.mini_batch_size
    whole = m.perplexity(toks, ttt=ttt).nll
    # Cut inside a mini-batch (pending tokens), on a boundary, and after logits() forwarded the tail.
    for cut, ask in [(2 * B + 5, False), (3 * B + 1, False), (B + 17, True), (2 * B, True)]:
        s = m.session(ttt=ttt)
        got = [s.feed(toks[:cut])]
        before = s.logits() if ask else None
        path = tmp_path / f"s{cut}.ses"
        s.save(path)
        t = tttcl.Session.load(m, path, ttt=ttt)
        assert t.position == s.position == cut and t.pending == s.pending and t.ttt == ttt
        after = t.logits()
        if ask:
            assert np.array_equal(after, before)
        assert np.array_equal(after, s.logits())
        got.append(t.feed(toks[cut:]))
        got.append(t.flush())
        assert np.array_equal(np.concatenate(got), whole), cut
    # An empty session saves and loads too.
    m.session(ttt=ttt).save(tmp_path / "empty.ses")
    e = tttcl.Session.load(m, str(tmp_path / "empty.ses"), ttt=ttt)
    assert e.position == 0
    assert np.array_equal(np.concatenate([e.feed(toks), e.flush()]), whole)


def test_session_file_errors(models, tmp_path):
    m = models["medium"]
    toks = golden_tokens("medium")
    s = m.session()
    s.feed(toks[:100])
    path = tmp_path / "a.ses"
    s.save(path)
    with pytest.raises(tttcl.Error, match="another model"):
        tttcl.Session.load(models["tiny"], path)
    with pytest.raises(tttcl.Error, match="other options"):
        tttcl.Session.load(m, path, ttt=False)
    with pytest.raises(tttcl.Error, match="other options"):
        tttcl.Session.load(m, path, inner_lr=0.5)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    bad = tmp_path / "bad.ses"
    bad.write_bytes(bytes(data))
    with pytest.raises(tttcl.Error, match="bad.ses.*corrupt"):
        tttcl.Session.load(m, bad)
    bad.write_bytes(b"not a session")
    with pytest.raises(tttcl.Error, match="bad.ses"):
        tttcl.Session.load(m, bad)
    with pytest.raises(tttcl.Error, match="missing.ses"):
        tttcl.Session.load(m, tmp_path / "missing.ses")
    with pytest.raises(tttcl.Error, match="missing/x.ses|missing"):
        s.save(tmp_path / "missing" / "x.ses")
    s.flush()
    with pytest.raises(tttcl.Error, match="flush"):
        s.save(path)


def test_session_save_replaces_only_sessions(models, tmp_path):
    """Session.save follows the tools' --save-session: an existing file is replaced only when it is a session file
    (TTT-SES header) or empty; any other is refused, naming it, and left byte for byte."""
    s = models["tiny"].session()
    s.feed(golden_tokens("tiny")[:20])
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my notes, not a session\n")
    with pytest.raises(tttcl.Error, match="notes.txt: the file exists and is not a session file .*TTT-SES"):
        s.save(notes)
    assert notes.read_bytes() == b"my notes, not a session\n"
    path = tmp_path / "own.ses"
    path.write_bytes(b"")  # empty: nothing to lose
    s.save(path)
    first = path.read_bytes()
    s.feed(golden_tokens("tiny")[20:40])
    s.save(path)  # its own: replaced
    assert first[:8] == path.read_bytes()[:8] == b"TTT-SES\n" and path.read_bytes() != first
    with pytest.raises(tttcl.Error, match="Session.save .*: is a directory"):
        s.save(tmp_path)  # said before anything is written, naming Session.save
    with pytest.raises(tttcl.Error, match="Session.save: empty file name"):
        s.save("")


def test_session_file_with_ttt_generate(kjv, tmp_path):
    exe = tool("ttt-generate")
    prompt = "In the beginning God created"
    s = kjv.session()
    s.feed(prompt)
    path = tmp_path / "py.ses"
    s.save(path)
    # Python -> ttt-generate: greedy continuation of the saved prompt is generate()'s.
    out = subprocess.run([exe, "-m", KJV, "--load-session", str(path), "-p", "", "-n", "20", "-q"], check=True,
                         capture_output=True).stdout
    want = kjv.generate(prompt, max_tokens=20)
    assert out.decode("utf-8", errors="replace") == want
    # The same greedy continuation from the Python session after load.
    t = tttcl.Session.load(kjv, path)
    ids = []
    for _ in range(20):
        ids.append(int(np.argmax(t.logits())))
        t.feed([ids[-1]])
    assert kjv.tokenizer.decode(ids) == want
    # ttt-generate -> Python: the document is the prompt and the 20 generated tokens; the next greedy token follows.
    gen = tmp_path / "gen.ses"
    subprocess.run([exe, "-m", KJV, "-p", prompt, "-n", "20", "-q", "--save-session", str(gen)], check=True,
                   capture_output=True)
    u = tttcl.Session.load(kjv, gen)
    assert u.position == len(prompt.encode()) + 20
    nxt = kjv.generate(prompt, max_tokens=21).encode()
    assert len(nxt) == 21 and int(np.argmax(u.logits())) == nxt[-1]
    with pytest.raises(tttcl.Error, match="other options"):
        tttcl.Session.load(kjv, gen, ttt=False)
    # Without test-time training ttt-generate forwards whole mini-batches unscored: the session continues after them.
    subprocess.run([exe, "-m", KJV, "-p", prompt, "-n", "20", "-q", "--no-ttt", "--save-session", str(gen)],
                   check=True, capture_output=True)
    v = tttcl.Session.load(kjv, gen, ttt=False)
    assert v.position == len(prompt.encode()) + 20
    nxt = kjv.generate(prompt, max_tokens=21, ttt=False).encode()
    assert len(nxt) == 21 and int(np.argmax(v.logits())) == nxt[-1]
    assert np.all(np.isfinite(v.feed(kjv.tokenizer.encode(" and the earth" * 8)))) and np.all(np.isfinite(v.flush()))


def test_generation_deterministic_and_cli(kjv):
    prompt = "In the beginning God created"
    a = kjv.generate(prompt, max_tokens=60)
    assert a == kjv.generate(prompt, max_tokens=60) and len(a.encode()) == 60
    assert "".join(kjv.stream(prompt, max_tokens=60)) == a
    s1 = kjv.generate(prompt, max_tokens=60, temperature=0.9, top_k=40, top_p=0.95, repeat_penalty=1.1, seed=5)
    assert s1 == kjv.generate(prompt, max_tokens=60, temperature=0.9, top_k=40, top_p=0.95, repeat_penalty=1.1,
                              seed=5)
    seeds = {kjv.generate(prompt, max_tokens=60, temperature=1.0, seed=k) for k in range(4)}
    assert len(seeds) > 1
    # Stop strings end the text before them.
    word = a.split()[1]
    cut = kjv.generate(prompt, max_tokens=60, stop=[word, "zzz"])
    assert cut == a[:a.index(word)]
    # Generation ends at the stop string (a limit of 10**6 tokens is never reached).
    assert kjv.generate(prompt, max_tokens=10**6, stop=word) == cut
    # Without test-time training the model still generates (the same with the same settings).
    assert kjv.generate(prompt, max_tokens=20, ttt=False) == kjv.generate(prompt, max_tokens=20, ttt=False)
    if APPS and os.path.exists(os.path.join(APPS, "ttt-generate")):
        for extra, kw in [([], {}), (["--temperature", "0.9", "--top-k", "40", "--seed", "5"],
                                     dict(temperature=0.9, top_k=40, seed=5))]:
            out = subprocess.run([os.path.join(APPS, "ttt-generate"), "-m", KJV, "-p", prompt, "-n", "60", "-q",
                                  *extra], check=True, capture_output=True).stdout
            assert out.decode("utf-8", errors="replace") == kjv.generate(prompt, max_tokens=60, **kw)


def incomplete_utf8_tail(b):
    """Bytes at the end of b that start a UTF-8 sequence b does not complete."""
    for back in range(1, min(4, len(b)) + 1):
        c = b[-back]
        if c & 0xC0 == 0x80:
            continue
        n = 4 if 0xF0 <= c <= 0xF4 else 3 if 0xE0 <= c <= 0xEF else 2 if 0xC2 <= c <= 0xDF else 1
        return back if back < n else 0
    return 0


def test_stream_pieces_are_whole_utf8(kjv):
    text = "Ä é — ü ß " * 3
    for seed in range(3):
        kw = dict(max_tokens=80, temperature=1.5, seed=seed)
        raw = []
        gen = tttcl._tttcl.Generator(kjv._core, kjv.tokenizer.encode(text), 1.5, 0, 1.0, 1.0, 64, seed, [], True, 80)
        while (p := gen.next()) is not None:
            raw.append(p)
        assert raw and all(incomplete_utf8_tail(p) == 0 for p in raw[:-1])
        assert gen.produced == 80 and len(b"".join(raw)) == 80
        pieces = list(kjv.stream(text, **kw))
        assert "".join(pieces) == b"".join(raw).decode("utf-8", errors="replace") == kjv.generate(text, **kw)
    assert kjv.generate("x", max_tokens=0) == ""


def test_tokenizer(kjv):
    t = kjv.tokenizer
    ids = t.encode("héllo")
    assert ids.dtype == np.int32 and list(ids) == list("héllo".encode())
    assert t.decode(ids) == "héllo"
    assert t.decode_bytes([0xC3]) == b"\xc3" and t.decode([0xC3]) == "\ufffd"
    assert list(t.encode("a", bos=True)) == [97]  # kjv-bytes has no BOS
    assert t.name == "bytes"


def test_weight_dtype(models, tmp_path):
    """16-bit storage: the bf16 checkpoint stays bf16 by default and scores as its f32 widening and as the CLI."""
    case = os.path.join(GOLDEN, "bf16-weights")
    toks = golden_tokens("bf16-weights")
    auto = models["bf16-weights"]
    assert auto.weight_dtype == "bf16"
    wide = tttcl.Model(case, weight_dtype="f32")
    assert wide.weight_dtype == "f32"
    np.testing.assert_allclose(auto.perplexity(toks).nll, wide.perplexity(toks).nll, atol=1e-3, rtol=0)
    tokfile = tmp_path / "t.txt"
    tokfile.write_text(" ".join(str(t) for t in toks))
    np.testing.assert_array_equal(tttcl.Model(case, weight_dtype="bf16").perplexity(toks).nll,
                                  cli_nll(tmp_path, "-m", case, "--tokens", str(tokfile), "--weight-dtype", "bf16"))
    with pytest.raises(tttcl.Error, match="weight_dtype='f8'"):
        tttcl.Model(case, weight_dtype="f8")


def test_kv_dtype(tmp_path):
    """f16 keys and values: Model(kv_dtype='f16') scores as the CLI's --kv-dtype f16, near and yet not equal to f32;
    a session saved from f16 rings loads and continues exactly; anything but f32 or f16 is refused."""
    case = os.path.join(GOLDEN, "medium")
    toks = golden_tokens("medium")
    m16 = tttcl.Model(case, kv_dtype="f16")
    assert m16.kv_dtype == "f16" and tttcl.Model(case).kv_dtype == "f32"
    half = m16.perplexity(toks).nll
    wide = tttcl.Model(case).perplexity(toks).nll
    np.testing.assert_allclose(half, wide, atol=1e-2, rtol=0)
    assert not np.array_equal(half, wide)
    tokfile = tmp_path / "t.txt"
    tokfile.write_text(" ".join(str(t) for t in toks))
    np.testing.assert_array_equal(half, cli_nll(tmp_path, "-m", case, "--tokens", str(tokfile), "--kv-dtype", "f16"))
    B = m16.mini_batch_size
    s = m16.session()
    got = [s.feed(toks[:2 * B + 5])]
    s.save(tmp_path / "kv16.ses")
    t = tttcl.Session.load(m16, tmp_path / "kv16.ses")
    got += [t.feed(toks[2 * B + 5:]), t.flush()]
    assert np.array_equal(np.concatenate(got), half)
    for bad in ("bf16", "auto"):
        with pytest.raises(tttcl.Error, match=f"kv_dtype='{bad}'"):
            tttcl.Model(case, kv_dtype=bad)


def test_errors(kjv, models, tmp_path):
    assert issubclass(tttcl.Error, RuntimeError)
    missing = str(tmp_path / "nope")
    with pytest.raises(tttcl.Error, match="nope"):
        tttcl.Model(missing)
    with pytest.raises(tttcl.Error, match="no-such-device"):
        tttcl.Model(KJV, device="no-such-device")
    with pytest.raises(tttcl.Error, match="device=99: out of range"):
        tttcl.Model(KJV, device=99)
    for blank in ("", "  "):  # the CLI refuses --device '' too
        with pytest.raises(tttcl.Error, match="empty"):
            tttcl.Model(KJV, device=blank)
    with pytest.raises(tttcl.Error, match="at least 2 tokens"):
        kjv.perplexity([5])
    with pytest.raises(tttcl.Error, match="256"):
        kjv.perplexity([1, 2, 256])
    with pytest.raises(tttcl.Error, match="out of range"):
        kjv.perplexity([1, -3, 2])
    with pytest.raises(tttcl.Error, match="integers"):
        kjv.perplexity(np.array([1.0, 2.0]))
    with pytest.raises(tttcl.Error, match="1-D"):
        kjv.perplexity(np.zeros((2, 2), dtype=np.int32))
    with pytest.raises(tttcl.Error, match="parallel"):
        kjv.perplexity_many(["abc"], parallel=0)
    with pytest.raises(tttcl.Error, match="inner_lr"):
        kjv.perplexity("abc", full_attention=True, inner_lr=0.1)
    with pytest.raises(tttcl.Error, match="inner_lr"):
        kjv.perplexity("abc", inner_lr=-1)
    with pytest.raises(tttcl.Error, match="no documents"):
        kjv.perplexity_many([])
    for kw, word in [(dict(temperature=-1), "temperature"), (dict(top_p=0), "top-p"), (dict(top_k=-2), "top-k"),
                     (dict(repeat_penalty=0), "repeat penalty"), (dict(max_tokens=-1), "max_tokens"),
                     (dict(stop=""), "stop")]:
        with pytest.raises(tttcl.Error, match=word):
            kjv.generate("abc", **kw)
    with pytest.raises(tttcl.Error, match="prompt: token id 300"):
        kjv.generate([300])
    s = kjv.session()
    with pytest.raises(tttcl.Error, match="no token"):
        s.logits()
    with pytest.raises(tttcl.Error, match="Session.feed ids: token id 999"):
        s.feed([1, 999])
    with pytest.raises(tttcl.Error, match="256"):
        kjv.tokenizer.decode([256])
    # A token-id model has no tokenizer: text is an error naming the model directory.
    with pytest.raises(tttcl.Error, match="tiny"):
        models["tiny"].perplexity("some text")
    # The model still works after every error.
    assert kjv.perplexity("abcdef").tokens == 5


def test_two_threads_two_models(genesis):
    text = genesis[:4000]
    a, b = tttcl.Model(KJV), tttcl.Model(os.path.join(GOLDEN, "medium"))
    toks = golden_tokens("medium")
    want_a, want_b = a.perplexity(text).nll, b.perplexity(toks).nll
    results, errors = {}, []

    def work(name, m, doc):
        try:
            results[name] = [m.perplexity(doc).nll for _ in range(3)]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=("a", a, text)), threading.Thread(target=work, args=("b", b, toks))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in ts), "deadlock: a thread did not finish"
    assert not errors, errors
    assert all(np.array_equal(x, want_a) for x in results["a"])
    assert all(np.array_equal(x, want_b) for x in results["b"])


def test_keyboard_interrupt_leaves_model_usable(kjv, genesis):
    text = genesis[:8193]
    want = kjv.perplexity(text[:1000]).nll
    calls = []

    def progress(done, total):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        kjv.perplexity(text, progress=progress)
    assert len(calls) == 2  # stopped at the next mini-batch
    assert np.array_equal(kjv.perplexity(text[:1000]).nll, want)

    # A real SIGINT from another thread during a long document.
    started = threading.Event()
    t = threading.Thread(target=lambda: started.wait(60) and signal.raise_signal(signal.SIGINT))
    t.start()
    seen = []
    with pytest.raises(KeyboardInterrupt):
        kjv.perplexity(genesis[:65536], progress=lambda d, n: (seen.append(d), started.set()))
    t.join()
    assert seen[-1] < 65535
    assert np.array_equal(kjv.perplexity(text[:1000]).nll, want)

    # In a batch: a SIGINT raises, and the model's batched sessions work as before after it.
    started.clear()
    t = threading.Thread(target=lambda: started.wait(60) and signal.raise_signal(signal.SIGINT))
    t.start()
    seen.clear()
    with pytest.raises(KeyboardInterrupt):
        kjv.perplexity_many([genesis[:65536], genesis[:32768]], parallel=2,
                            progress=lambda d, n: (seen.append(d), started.set()))
    t.join()
    both = kjv.perplexity_many([text[:1000], text[:1000]], parallel=2)
    assert all(np.allclose(r.nll, want, atol=1e-5, rtol=0) for r in both)

    # During a session's feed: what was scored before the interrupt comes with the next call.
    s = kjv.session()
    toks = kjv.tokenizer.encode(genesis[:16384])
    t = threading.Timer(0.3, signal.raise_signal, args=(signal.SIGINT,))
    got = []
    t.start()
    with pytest.raises(KeyboardInterrupt):
        got.append(s.feed(toks))
    t.join()
    assert s.pending > kjv.mini_batch_size  # stopped early
    got.append(s.feed([]))
    got.append(s.flush())
    assert np.array_equal(np.concatenate(got), kjv.perplexity(toks).nll)
