"""Leaf helpers shared by training, evaluation and the classifier: devices, per-step random
generators and the shift augmentation. They import nothing else from the library."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "resolve_device",
    "bf16_supported",
    "step_generator",
    "random_shift",
    "machine",
    "cpu_model",
    "machine_name",
]


def resolve_device(device) -> torch.device:
    """``"auto"`` -> cuda if available, else mps, else cpu; ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``
    as given, after checking that this machine has it (ValueError naming the device otherwise)."""
    has_mps = (
        getattr(torch.backends, "mps", None) is not None
        and torch.backends.mps.is_available()
    )
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}"
        ) from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}"
        )
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"device {device!r}: this machine has no CUDA GPU (torch.cuda.is_available() is "
                f"False); use 'cpu' or 'auto'"
            )
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} CUDA GPU(s)")
    if dev.type == "mps" and not has_mps:
        raise ValueError(
            f"device {device!r}: MPS is not available on this machine; use 'cpu' or 'auto'"
        )
    return dev


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast pays on ``device``: CUDA, or a CPU with native bf16 instructions
    (AVX512-BF16 or AMX). Elsewhere bf16 is emulated and slower than fp32, so training stays fp32."""
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        return bool(
            getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()
        )
    return False


def step_generator(seed: int, rank: int, step: int, micro: int = 0) -> torch.Generator:
    """The CPU generator of one (micro-)step: independent of what ran before, so resuming is exact."""
    state = np.random.SeedSequence([seed, rank, step, micro]).generate_state(
        2, dtype=np.uint64
    )
    return torch.Generator().manual_seed(int(state[0] % (2**63)))


def random_shift(
    x: torch.Tensor, max_shift: int, generator: torch.Generator
) -> torch.Tensor:
    """Translate each image of ``x`` [B, C, H, W] by up to ``max_shift`` pixels (edges replicated)."""
    if max_shift == 0:
        return x
    B, C, H, W = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    offset = torch.randint(0, 2 * max_shift + 1, (B, 2), generator=generator).to(
        x.device
    )
    rows = (torch.arange(H, device=x.device)[None] + offset[:, :1])[
        :, None, :, None
    ].expand(B, C, H, W + 2 * max_shift)
    out = padded.gather(2, rows)
    cols = (torch.arange(W, device=x.device)[None] + offset[:, 1:])[
        :, None, None, :
    ].expand(B, C, H, W)
    return out.gather(3, cols)


def cpu_model(cpuinfo: Optional[str] = None) -> str:
    """The CPU's model name and the bf16 instructions it reports, from ``/proc/cpuinfo`` (or
    ``cpuinfo``, its text): ``"AMD EPYC 7B13 (avx512_bf16)"``; the platform's word where
    there is no cpuinfo. Two machines that torch dispatches to one ISA level can differ in
    bf16 speed (AMX or not)."""
    import platform

    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = " ".join(fields.get("model name", "").split())
    flags = set(fields.get("flags", "").split())
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return f"{name} ({', '.join(bf16)})" if bf16 else name


def machine() -> str:
    """The machine in words: the GPU (CUDA version) or the CPU (model, the ISA torch
    dispatches to, cores), and torch's version."""
    import os

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    return (
        f"CPU {cpu_model()}, {torch.backends.cpu.get_cpu_capability()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}"
    )


def machine_name(text: str) -> str:
    """A machine description (``machine()``'s, or a study record's) in two or three words:
    ``"Xeon, AVX512"``, ``"EPYC, AVX2"``; the ISA is what tells two machines' speeds apart."""
    cpu = next((n for n in ("Xeon", "EPYC") if n in text), text.split(",")[0])
    isa = "AVX2" if "AVX2" in text else "AVX512" if "AVX512" in text else ""
    return f"{cpu}, {isa}" if isa else cpu
