"""Where a training step makes the host wait for the GPU, by line of code (issue 23).

    python bench/host_reads.py --shape mistral7b --setup medchat_eager --out results/host_reads.md   # on a GPU
    python bench/host_reads.py --shape tiny --setup medchat_eager trainer.fused_lora=true          # CPU smoke
    python bench/host_reads.py --mode sync --setup medchat --out results/host_syncs.md              # GPU only

Call 14's profiles (bench/RESULTS.md, issue 23) counted about 1,030 cudaMemcpyAsync and 685 cudaStreamSynchronize
calls per optimizer step of the 7B defaults, eager and compiled alike, and 305 aten::item, of which 224 read the
dropout seeds' CPU tensors; the profiler does not say who makes the others. This runs one setup of
bench/qlora_throughput.py (the same model, rows and trainer) and, during `--spy-steps` optimizer steps after the
warm-up, watches every aten operator (a TorchDispatchMode) for the ones that wait for the device: a read of a
device value on the host (`_local_scalar_dense`, what .item(), int(), float() and bool() run), `nonzero` (its
output size), `equal`, and copies between the host and the device (`_to_copy` / `copy_` with the two on
different devices; from pageable host memory they wait too). Each is counted per step by the three innermost
Python frames outside torch that led to it.

Eager setups only: while a dispatch mode is active Dynamo skips compiled frames, and flex_attention (a higher-order
operator the mode cannot run) fails under it, so pass `model.attn_implementation=sdpa` (speed_record.sh reads does):
transformers' mask building differs, the rest of the step is the same (the host reads counted in call 14 were the
same compiled and eager). Not seen: syncs inside composite operators below the dispatcher (boolean-mask indexing,
masked_select) and reads on autograd's backward threads come without a Python frame. Reads of CPU tensors (the
dropout seeds) wait for nothing: they are listed, and left out of the per-step total. On CPU nothing is a device.

`--mode sync` (GPU only) instead asks the CUDA runtime wrapper itself: `torch.cuda.set_sync_debug_mode("warn")` makes
every synchronising call torch makes (a stream or device synchronize, a blocking copy in either direction, the
reads above) warn, and each warning is counted by the Python frames that led to it. It sees compiled layers and
flex_attention too (no dispatch mode), so it runs any setup, the compiled defaults included; it does not see
synchronisation that bypasses torch (a library calling the CUDA runtime itself).
"""

from __future__ import annotations

import argparse
import collections
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import qlora_throughput as qt  # noqa: E402

READS = ("aten._local_scalar_dense", "aten.nonzero", "aten.is_nonzero", "aten.equal")
COPIES = ("aten._to_copy", "aten.copy_")


def _devices(func, args, kwargs) -> str | None:
    """'cuda->cpu' (a device read) or 'cpu->cuda' for a copy across devices, else None."""
    name = str(func)
    if name.startswith("aten._to_copy"):
        src = args[0]
        dst = kwargs.get("device") or src.device
    elif name.startswith("aten.copy_"):
        dst, src = args[0].device, args[1]
    else:
        return None
    if not isinstance(src, torch.Tensor):
        return None
    src, dst = torch.device(src.device).type, torch.device(dst).type
    return f"{src}->{dst}" if src != dst else None


def _site() -> str:
    skip = ("host_reads.py", "_python_dispatch.py", "warnings.py")
    frames = [f for f in traceback.extract_stack()[:-2]
              if "/site-packages/torch/" not in f.filename and Path(f.filename).name not in skip]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames[-3:][::-1]) or "(no frame)"


class SyncWarnings:
    """Counts torch's sync-debug warnings by site while entered (`--mode sync`)."""

    def __init__(self):
        self.counts: collections.Counter = collections.Counter()
        self._show = None

    def __enter__(self):
        import warnings

        self._show = warnings.showwarning
        show = self._show

        def count(message, category, filename, lineno, file=None, line=None):
            if "synchronizing" in str(message):
                self.counts[("sync", _site())] += 1
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = count
        warnings.filterwarnings("always", message=".*synchronizing.*")
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc):
        import warnings

        torch.cuda.set_sync_debug_mode("default")
        warnings.showwarning = self._show


class Spy(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        what = None
        if name.startswith(READS):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            what = f"{name.split('.')[1]} ({tensors[0].device.type if tensors else '?'})"
        elif name.startswith(COPIES):
            direction = _devices(func, args, kwargs)
            if direction is not None:
                what = f"{name.split('.')[1]} ({direction})"
        if what is not None:
            self.counts[(what, _site())] += 1
        return func(*args, **kwargs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="mistral7b", choices=sorted(qt.SHAPES))
    ap.add_argument("--setup", default="medchat_eager", help="a medchat setup of bench/qlora_throughput.py (eager "
                    "ones only under --mode spy)")
    ap.add_argument("--mode", choices=("spy", "sync"), default="spy", help="spy: a dispatch mode over aten operators; "
                    "sync: torch's sync-debug warnings (GPU only; compiled setups too)")
    ap.add_argument("--work", default="/tmp/medchat-bench")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--spy-steps", type=int, default=2)
    ap.add_argument("--lengths", default=str(ROOT / "bench/icliniq_lengths.json"))
    ap.add_argument("--out", default=None, help="write the table (markdown) here too")
    ap.add_argument("overrides", nargs="*", help="more config overrides, e.g. model.attn_implementation=sdpa if "
                    "flex_attention's compiled kernels refuse to run under the spy")
    a = ap.parse_args()
    work = Path(a.work)
    model_dir = qt.prepare_model(work, a.shape)
    from transformers import AutoConfig

    ds = qt.rows(Path(a.lengths), AutoConfig.from_pretrained(model_dir).vocab_size)
    if a.mode == "sync" and not torch.cuda.is_available():
        raise SystemExit("--mode sync needs a CUDA GPU (torch's sync-debug mode watches the CUDA runtime)")
    spy = Spy() if a.mode == "spy" else SyncWarnings()
    timer = qt.timer_callback(a.warmup, a.spy_steps, None)
    begin, end = timer.on_step_begin, timer.on_step_end

    def on_step_begin(args, state, control, **kw):  # the spy watches optimizer steps warmup+1 .. warmup+spy_steps
        if state.global_step == a.warmup:
            spy.__enter__()
        return begin(args, state, control, **kw)

    def on_step_end(args, state, control, **kw):
        if state.global_step == a.warmup + a.spy_steps:
            spy.__exit__(None, None, None)
        return end(args, state, control, **kw)

    timer.on_step_begin, timer.on_step_end = on_step_begin, on_step_end
    steps = a.warmup + a.spy_steps
    qt.medchat_fit(f"host_reads_{a.setup}", qt.SETUPS[a.setup] + qt.SHAPE_OVERRIDES.get(a.shape, [])
                   + list(a.overrides) + [f"trainer.max_steps={steps}"], model_dir, ds, work, timer)
    device = sum(n for (what, _), n in spy.counts.items() if "cuda" in what or what == "sync") / a.spy_steps
    total = sum(spy.counts.values()) / a.spy_steps
    lines = [f"{a.setup} on {a.shape} ({torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}, "
             f"{' '.join(a.overrides) or 'no overrides'}, --mode {a.mode}): {device:.0f} reads of device values or copies between "
             f"host and device per optimizer step ({total:.0f} with CPU-only reads), by site ({a.spy_steps} steps "
             f"after {a.warmup}; the batch fetched before the first spied step is not counted)", "",
             "per step | what | where (innermost first)", "---:|---|---"]
    lines += [f"{n / a.spy_steps:g} | {what} | {site}" for (what, site), n in spy.counts.most_common(40)]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
