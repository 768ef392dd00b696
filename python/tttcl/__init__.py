"""tttcl: TTT-E2E language models (end-to-end test-time training) on any OpenCL device.

A thin client of the ttt-cl library: scoring runs lib/eval's corpus passes and
generation lib/generate's decoder, so the numbers are those of ttt-perplexity
and ttt-generate. Device work releases the GIL; Ctrl-C raises
KeyboardInterrupt between mini-batches and leaves the model usable.

    >>> import tttcl
    >>> m = tttcl.Model("models/kjv-bytes")
    >>> r = m.perplexity("In the beginning God created the heaven and the earth.")
    >>> r.ppl, r.nll[:3]
"""
from __future__ import annotations

import functools
import inspect
import os
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from . import _tttcl
from ._tttcl import Device, Error

__all__ = ["Device", "Error", "Model", "PerplexityResult", "Session", "Tokenizer", "devices", "__version__"]
__version__ = "0.1.0"

Doc = Union[str, Sequence[int], np.ndarray]


def _options_of(source: Callable, without: Sequence[str] = ()):
    """For a method that passes its options on to `source`: its signature is its
    own leading parameters followed by source's options (those with defaults,
    less `without`), so help() and editors show them, a wrong one raises
    TypeError naming it, and their defaults are written once, in source. The
    body receives the options given as keyword arguments (**options)."""
    src = inspect.signature(source)

    def decorate(body: Callable) -> Callable:
        lead = [p for p in inspect.signature(body).parameters.values() if p.kind != p.VAR_KEYWORD]
        options = [p for p in src.parameters.values() if p.default is not p.empty and p.name not in without]
        sig = inspect.signature(body).replace(parameters=lead + options)

        @functools.wraps(body)
        def wrapper(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            given = dict(bound.arguments)
            leading = [given.pop(p.name) for p in lead]
            return body(*leading, **given)

        wrapper.__signature__ = sig
        return wrapper

    return decorate


def devices() -> list[Device]:
    """Every OpenCL device of every platform, in platform order (empty without an OpenCL driver)."""
    return _tttcl.devices()


def _ids(values, what: str) -> np.ndarray:
    """A 1-D contiguous int32 array of token ids; Error for anything else."""
    a = np.asarray(values)
    if a.ndim != 1:
        raise Error(f"{what}: expected a 1-D sequence of token ids, got shape {a.shape}")
    if a.size == 0:
        return np.zeros(0, dtype=np.int32)
    if not np.issubdtype(a.dtype, np.integer):
        raise Error(f"{what}: token ids must be integers, got dtype {a.dtype}")
    bad = np.flatnonzero((a < 0) | (a > np.iinfo(np.int32).max))
    if bad.size:
        i = int(bad[0])
        raise Error(f"{what}: token id {int(a[i])} at index {i} is out of range")
    return np.ascontiguousarray(a, dtype=np.int32)


class Tokenizer:
    """The model's tokenizer (byte-level BPE or bytes), as ttt-tokenize uses it."""

    def __init__(self, core: _tttcl.Core):
        self._core = core

    @property
    def name(self) -> str:
        """'bytes', or family, file and size, e.g. 'llama3 dir/tokenizer.json (128256 ids)'."""
        return self._core.tokenizer_name

    def encode(self, text: str, bos: bool = False, parse_special: bool = False) -> np.ndarray:
        """Token ids (int32) of text; bos=True prepends the model's BOS when it has one.

        parse_special=True turns special-token strings (e.g. <|eot_id|>) into their ids."""
        ids = self._core.encode(text, parse_special)
        if bos and self._core.bos_id >= 0:
            ids = np.concatenate([np.array([self._core.bos_id], dtype=np.int32), ids])
        return ids

    def decode_bytes(self, ids: Sequence[int] | np.ndarray) -> bytes:
        """The exact bytes of ids (the inverse of encode, even for invalid UTF-8)."""
        return self._core.decode(_ids(ids, "decode"))

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of ids; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


class PerplexityResult:
    """One document's scores: what ttt-perplexity reports for it."""

    def __init__(self, nll: np.ndarray):
        self.nll: np.ndarray = nll  #: float32, one natural-log NLL per predicted token (the CLI's --nll-out)
        mean, ppl, ppl_err, nll_err = _tttcl.Core.stats(nll)
        self.mean_nll: float = mean  #: mean of nll
        self.ppl: float = ppl  #: exp(mean_nll)
        self.ppl_err: float = ppl_err  #: standard error of ppl (llama.cpp's "PPL = x +/- err")
        self.nll_err: float = nll_err  #: standard error of mean_nll

    @property
    def tokens(self) -> int:
        """Tokens scored (a document of T tokens scores T - 1)."""
        return int(self.nll.size)

    def __repr__(self) -> str:
        return f"PerplexityResult(tokens={self.tokens}, mean_nll={self.mean_nll:.4f}, ppl={self.ppl:.4f} +/- {self.ppl_err:.4f})"


class Session:
    """One document fed in pieces, keeping its adapted state (Model.session()).

    feed() buffers tokens into the model's mini-batches of B tokens exactly as
    a whole-document perplexity() does: each mini-batch is scored (and, with
    test-time training, trained on) once all its targets are known. So
    concatenating what feed() returns and what flush() returns gives
    perplexity(doc).nll bit for bit.

    save(path) and Session.load(model, path) keep a document in a session
    file, the format of ttt-generate --save-session / --load-session."""

    def __init__(self, model: "Model", ttt: bool = True, inner_lr: Optional[float] = None):
        self.model = model
        self._s = _tttcl.DocSession(model._core, ttt, inner_lr)

    def feed(self, ids: Doc) -> np.ndarray:
        """Appends tokens (ids, or text encoded without BOS) and returns the NLLs
        of the tokens newly scored: every mini-batch whose targets are now all
        known. The last pending tokens (fewer than B) come from flush()."""
        if isinstance(ids, str):
            ids = self.model.tokenizer.encode(ids)
        return self._s.feed(_ids(ids, "Session.feed"))

    def flush(self) -> np.ndarray:
        """Ends the document: the NLLs of the pending tokens (no test-time step,
        as the last partial mini-batch of a whole document). feed() then raises
        until reset()."""
        return self._s.flush()

    def logits(self) -> np.ndarray:
        """Logits (float32, vocabulary-sized) predicting the token after the last one fed."""
        return self._s.logits()

    def reset(self) -> None:
        """A fresh document: position 0, prime weights as loaded."""
        self._s.reset()

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes the document so far to a session file (checksummed, written
        atomically): every token fed, the key/value rings and the adapted
        prime weights, with the model's fingerprint and the session's options.
        Pending tokens (a partial mini-batch) are saved as tokens, not scored:
        after Session.load() the next feed() or flush() scores them exactly as
        an uninterrupted session would, so the NLLs returned before save()
        followed by those returned after load() equal feeding the document
        whole, and logits() is the same. NLLs held back by an interrupted
        feed() are not saved. Raises Error after flush(), and when path is a
        non-empty file that is not a session file (it is left untouched: only
        a session file, or an empty one, is ever replaced).

        The file continues in `ttt-generate --load-session FILE` (same model,
        --no-ttt and --inner-lr as this session's ttt and inner_lr)."""
        self._s.save(os.fspath(path))

    @classmethod
    def load(cls, model: "Model", path: Union[str, "os.PathLike[str]"], ttt: bool = True,
             inner_lr: Optional[float] = None) -> "Session":
        """A session continuing a document saved by save() (or by
        ttt-generate / ttt-perplexity --save-session). ttt and inner_lr must be
        the options it was saved with; a file of another model, other options,
        or a corrupt one raises Error naming the file. A file written without
        test-time training by ttt-generate continues from its last whole
        mini-batch: the NLLs of the tokens it forwarded are not returned."""
        s = cls(model, ttt=ttt, inner_lr=inner_lr)  # the options a session file was saved with, checked by load
        s._s.load(os.fspath(path))
        return s

    @property
    def position(self) -> int:
        """Tokens fed so far (the position of the next token)."""
        return self._s.position

    @property
    def pending(self) -> int:
        """Predicted tokens whose NLL feed() has not returned yet (scored by a later feed or flush)."""
        return self._s.pending

    @property
    def ttt(self) -> bool:
        """Whether the session takes test-time steps."""
        return self._s.ttt


class Model:
    """A TTT-E2E model directory loaded onto one OpenCL device.

    device: None ($TTT_DEVICE, else the first GPU, else the first device), a
    spec string ('P:D' or part of the device name), an index into devices(),
    or a Device. One model is used by one thread at a time (calls from several
    threads are serialised); two models on two threads run side by side."""

    def __init__(self, path: str, device: Union[None, str, int, Device] = None, weight_dtype: str = "auto",
                 kv_dtype: str = "f32"):
        if isinstance(device, Device):
            spec = device.spec
        elif isinstance(device, int) and not isinstance(device, bool):
            devs = devices()
            if not 0 <= device < len(devs):
                raise Error(f"device={device}: out of range; tttcl.devices() lists {len(devs)} "
                            f"device{'' if len(devs) == 1 else 's'}, from index 0")
            spec = devs[device].spec
        elif device is None:
            spec = ""
        elif isinstance(device, str):
            if not device.strip():
                raise Error("device='': empty; pass None for the default device, a spec string or an index")
            spec = device
        else:
            raise Error(f"device={device!r}: expected None, a spec string, an index or a tttcl.Device")
        self._core = _tttcl.Core(str(path), spec, weight_dtype, kv_dtype)
        self.tokenizer = Tokenizer(self._core)

    @property
    def path(self) -> str:
        return self._core.path

    @property
    def weight_dtype(self) -> str:
        """Storage of the weight matrices on the device: 'f32', 'f16' or 'bf16' (weight_dtype='auto': the file's)."""
        return self._core.weight_dtype

    @property
    def kv_dtype(self) -> str:
        """Storage of the key/value rings on the device: 'f32' or 'f16' (half the bytes; attention computes in f32).
        Session states (save/load) hold f32 either way."""
        return self._core.kv_dtype

    @property
    def device(self) -> Device:
        return self._core.device

    @property
    def vocab_size(self) -> int:
        return self._core.vocab_size

    @property
    def mini_batch_size(self) -> int:
        """B: tokens per test-time step."""
        return self._core.mini_batch_size

    @property
    def window(self) -> int:
        """W: the sliding attention window."""
        return self._core.sliding_window_size

    def __repr__(self) -> str:
        return f"tttcl.Model({self.path!r}, device={self.device.label!r})"

    def _document(self, doc: Doc, what: str) -> np.ndarray:
        if isinstance(doc, str):
            return self.tokenizer.encode(doc, bos=True)  # BOS as ttt-perplexity -f adds it
        return _ids(doc, what)

    def perplexity_many(self, docs: Iterable[Doc], parallel: int = 1, ttt: bool = True,
                        inner_lr: Optional[float] = None, full_attention: bool = False,
                        progress: Optional[Callable[[int, int], None]] = None) -> list[PerplexityResult]:
        """Scores every document, each from a fresh state; parallel=N scores N at
        a time in a batched session (ttt-perplexity --parallel N; the same NLLs
        to rounding). Results in the order of docs. With parallel > 1, Ctrl-C
        stops after the batch's current step, as one at a time after the
        current mini-batch, and raises."""
        arrays = [self._document(d, f"document {i}") for i, d in enumerate(docs)]
        nll = self._core.score(arrays, ttt, inner_lr, full_attention, parallel, progress)
        return [PerplexityResult(v) for v in nll]

    @_options_of(perplexity_many, without=("parallel",))
    def perplexity(self, doc: Doc, **options) -> PerplexityResult:
        """Scores one document from a fresh state, as ttt-perplexity does.

        doc: text (tokenised with BOS, as `ttt-perplexity -f`), or token ids.
        ttt=False: no test-time training (--no-ttt); inner_lr overrides the
        model's step size (--inner-lr); full_attention=True: attention over the
        whole document without test-time training (--full-attention).
        progress(done, total) is called after every mini-batch; an exception
        it raises stops the run and propagates."""
        return self.perplexity_many([doc], **options)[0]

    @_options_of(Session.__init__)
    def session(self, **options) -> Session:
        """A document fed in pieces, keeping its adapted state; see Session."""
        return Session(self, **options)

    def stream(self, prompt: Doc, max_tokens: int = 256, temperature: float = 0.0, top_k: int = 0,
               top_p: float = 1.0, repeat_penalty: float = 1.0, seed: int = 0,
               stop: Union[None, str, Sequence[str]] = None, ttt: bool = True,
               repeat_last_n: int = 64) -> Iterator[str]:
        """Generates text as ttt-generate does, yielding pieces of whole UTF-8
        characters as they are produced. The prompt (text, BOS prepended, or
        ids) is prefilled with test-time training; the prime MLPs keep taking
        their step every B tokens. Stops at EOS, after max_tokens tokens, or at
        the first stop string (not yielded). temperature=0 is greedy; the same
        seed gives the same text."""
        ids = self._document(prompt, "prompt")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        gen = _tttcl.Generator(self._core, ids, float(temperature), int(top_k), float(top_p),
                               float(repeat_penalty), int(repeat_last_n), int(seed), stops, bool(ttt),
                               int(max_tokens))
        while True:
            piece = gen.next()
            if piece is None:
                return
            yield piece.decode("utf-8", errors="replace")

    @_options_of(stream)
    def generate(self, prompt: Doc, **options) -> str:
        """The generated text (without the prompt); see stream()."""
        return "".join(self.stream(prompt, **options))
