"""colddiff_lib.runtime: devices, per-step generators, the shift augmentation and the machine in words."""

import pytest
import torch

from colddiff_lib.runtime import (
    bf16_supported,
    cpu_model,
    machine,
    random_shift,
    resolve_device,
    step_generator,
)


def test_resolve_device_takes_names_devices_and_auto():
    assert (
        resolve_device("cpu")
        == torch.device("cpu")
        == resolve_device(torch.device("cpu"))
    )
    best = resolve_device("auto")
    assert best.type == (
        "cuda"
        if torch.cuda.is_available()
        else "mps"
        if torch.backends.mps.is_available()
        else "cpu"
    )
    for bad in ("gpu", "tpu:0", None):
        with pytest.raises(
            ValueError, match="device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ):
            resolve_device(bad)


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="a CUDA machine has the device asked for"
)
def test_a_device_this_machine_lacks_is_refused_by_name():
    with pytest.raises(
        ValueError, match=r"device 'cuda:1': this machine has no CUDA GPU"
    ):
        resolve_device("cuda:1")


def test_bf16_is_used_only_where_it_is_native():
    assert bf16_supported(torch.device("meta")) is False
    assert isinstance(bf16_supported(torch.device("cpu")), bool)
    if torch.cuda.is_available():
        assert bf16_supported(torch.device("cuda")) is True


def test_machine_names_the_hardware_and_torch():
    text = machine()
    assert torch.__version__ in text and (("CUDA" in text) == torch.cuda.is_available())


def test_step_generator_is_a_pure_function_of_its_arguments():
    a = torch.rand(4, generator=step_generator(0, 0, 7))
    b = torch.rand(4, generator=step_generator(0, 0, 7))
    assert torch.equal(a, b)
    for other in (
        step_generator(1, 0, 7),
        step_generator(0, 1, 7),
        step_generator(0, 0, 8),
        step_generator(0, 0, 7, 1),
    ):
        assert not torch.equal(a, torch.rand(4, generator=other))


def test_random_shift_zero_is_identity():
    x = torch.rand(3, 2, 8, 8)
    y = random_shift(x, 0, torch.Generator().manual_seed(0))
    assert torch.equal(x, y)


def test_random_shift_moves_content_within_max_shift():
    B, H, W, m = 64, 16, 16, 3
    x = torch.zeros(B, 2, H, W)
    # one bright pixel, far enough from the edges that padding does not matter
    x[:, :, 8, 7] = 1.0
    y = random_shift(x, m, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    offsets = set()
    for i in range(B):
        # the pixel is moved, not lost or duplicated (both channels)
        assert y[i].sum() == 2.0
        assert torch.equal(y[i, 0], y[i, 1])  # channels move together
        r, c = (y[i, 0] == 1).nonzero()[0].tolist()
        dr, dc = r - 8, c - 7
        assert abs(dr) <= m and abs(dc) <= m
        offsets.add((dr, dc))
    assert len(offsets) > 10  # shifts differ between images and cover several offsets
    assert any(dr != 0 for dr, _ in offsets) and any(dc != 0 for _, dc in offsets)
    # Deterministic under the generator.
    assert torch.equal(y, random_shift(x, m, torch.Generator().manual_seed(0)))


def test_machine_names_the_cpu_model_and_its_bf16_instructions():
    """Two machines that torch dispatches to the same ISA level differ in bf16 speed: the
    model name and the bf16 flags say which one a figure came from."""
    xeon = (
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"
        "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu\n"
    )
    assert cpu_model(xeon) == "Intel(R) Xeon(R) Processor (avx512_bf16, amx_bf16)"
    epyc = "model name\t: AMD EPYC 7B12\nflags\t\t: fpu avx2 fma\n"
    assert cpu_model(epyc) == "AMD EPYC 7B12"
    assert cpu_model("") and "(" not in cpu_model("")  # no cpuinfo: the platform's word
    if not torch.cuda.is_available():
        assert cpu_model() in machine()


def test_machine_name_keeps_the_cpu_family_and_the_isa_that_set_its_speed():
    """The study's tables and A1 group rows by this name: both records' spellings map to it."""
    from colddiff_lib.runtime import machine_name

    assert (
        machine_name("CPU AMD EPYC, AVX2, 2 cores, torch 2.14.1+cu130") == "EPYC, AVX2"
    )
    xeon = "Intel Xeon (2 cores; AVX512 + AVX512_BF16 + AMX); torch 2.14.1"
    assert machine_name(xeon) == "Xeon, AVX512"
    assert machine_name("CPU Apple M2, DEFAULT, 8 cores") == "CPU Apple M2"
    if not torch.cuda.is_available():
        assert machine_name(machine()).split(",")[0] in machine()
