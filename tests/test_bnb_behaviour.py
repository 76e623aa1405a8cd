"""bitsandbytes 0.50.2's CPU ``dequantize_4bit`` decodes some 2-D shapes wrongly; ours does not.

Measured on an AVX512 CPU: for a 2-D weight whose width is a multiple of 16 but not of 64 (so
blocks of 64 span rows), the 2-D call applies the wrong block's absmax to some values, while the
packed bytes and absmax equal ours and the same bytes decoded as one flat row are right. Notebook
04 shows it ("A library bug the from-scratch NF4 catches"). This test pins the behaviour: when it
fails, bitsandbytes has changed, and that notebook section needs revisiting.
"""

import pytest
import torch

from lora_course import nf4

bnbf = pytest.importorskip("bitsandbytes.functional")
cpu_ops = pytest.importorskip("bitsandbytes.backends.cpu.ops")

pytestmark = pytest.mark.skipif(
    not getattr(cpu_ops, "_has_avx512", False),
    reason="the wrong decode was measured on AVX512 CPUs only; elsewhere it is not pinned",
)


def _decoded(width: int, rows: int = 8):
    w = torch.randn(rows, width, generator=torch.Generator().manual_seed(width))
    packed, state = bnbf.quantize_4bit(w, quant_type="nf4")
    ours = nf4.quantize_nf4(w)
    assert torch.equal(ours.packed.flatten(), packed.flatten())
    assert torch.equal(ours.absmax, state.absmax)
    flat = bnbf.dequantize_4bit(*bnbf.quantize_4bit(w.reshape(-1), quant_type="nf4"))
    return w, bnbf.dequantize_4bit(packed, state), flat.reshape(rows, width), ours


@pytest.mark.parametrize("width", [16, 48, 80, 96, 144])
def test_2d_decode_is_wrong_for_widths_multiple_of_16_not_64(width):
    w, two_d, flat, ours = _decoded(width)
    torch.testing.assert_close(nf4.dequantize_nf4(ours), flat, rtol=0, atol=0)
    assert not torch.equal(two_d, flat)  # fails the day bitsandbytes fixes it: revisit 04


@pytest.mark.parametrize("width", [64, 100, 128, 192, 512])
def test_2d_decode_is_right_for_other_widths(width):
    w, two_d, flat, ours = _decoded(width)
    torch.testing.assert_close(two_d, flat, rtol=0, atol=0)
    torch.testing.assert_close(nf4.dequantize_nf4(ours), flat, rtol=0, atol=0)


def test_the_96_by_80_example_of_notebook_04():
    w = torch.randn(96, 80, generator=torch.Generator().manual_seed(0))
    packed, state = bnbf.quantize_4bit(w, quant_type="nf4")
    ours_error = (nf4.dequantize_nf4(nf4.quantize_nf4(w)) - w).abs().max()
    bnb_error = (bnbf.dequantize_4bit(packed, state) - w).abs().max()
    assert ours_error < 0.5 and bnb_error > 1.5
