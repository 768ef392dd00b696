"""Type stubs of the native core _tttcl (the tttcl package wraps it)."""
from typing import Callable, Optional

import numpy as np

class Error(RuntimeError):
    """Every failure of the library, with its message (naming the file, tensor, token or option)."""

class Device:
    """An OpenCL device that tttcl can run on."""
    name: str
    vendor: str
    platform_name: str
    driver_version: str
    device_version: str
    compute_units: int
    global_mem: int
    fp16: bool
    @property
    def type(self) -> str: ...  # "GPU", "CPU", "accelerator", "other"
    @property
    def spec(self) -> str: ...  # "P:D", accepted by tttcl.Model(device=...)
    @property
    def label(self) -> str: ...

def devices() -> list[Device]: ...
def select_device(spec: str = "") -> Device: ...

class Core:
    def __init__(self, path: str, device: str = "", weight_dtype: str = "auto", kv_dtype: str = "f32") -> None: ...
    @property
    def weight_dtype(self) -> str: ...
    @property
    def kv_dtype(self) -> str: ...
    path: str
    device: Device
    vocab_size: int
    mini_batch_size: int
    sliding_window_size: int
    inner_lr: float
    bos_id: int
    has_tokenizer: bool
    tokenizer_name: str
    def encode(self, text: str, parse_special: bool = False) -> np.ndarray: ...
    def decode(self, ids: np.ndarray) -> bytes: ...
    def score(self, docs: list[np.ndarray], ttt: bool, inner_lr: Optional[float], full_attention: bool,
              parallel: int, progress: Optional[Callable[[int, int], None]]) -> list[np.ndarray]: ...
    @staticmethod
    def stats(nll: np.ndarray) -> tuple[float, float, float, float]: ...  # mean_nll, ppl, ppl_err, nll_err

class Generator:
    def __init__(self, core: Core, prompt: np.ndarray, temperature: float, top_k: int, top_p: float,
                 repeat_penalty: float, repeat_last_n: int, seed: int, stops: list[str], ttt: bool,
                 max_tokens: int) -> None: ...
    def next(self) -> Optional[bytes]: ...
    produced: int  # tokens generated so far

class DocSession:
    def __init__(self, core: Core, ttt: bool, inner_lr: Optional[float]) -> None: ...
    def feed(self, ids: np.ndarray) -> np.ndarray: ...
    def flush(self) -> np.ndarray: ...
    def logits(self) -> np.ndarray: ...
    def reset(self) -> None: ...
    def save(self, path: str) -> None: ...
    def load(self, path: str) -> None: ...
    position: int
    pending: int
    ended: bool
    ttt: bool
