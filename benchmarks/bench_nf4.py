"""Row 4: our NF4 (plain torch) against bitsandbytes on the CPU, for one weight matrix.

Bit-exactness is asserted first (packed bytes and absmax, then dequantized values); only then
is time compared. Target: ours / bitsandbytes <= 1.5 for quantize and for dequantize (a QLoRA
model dequantizes every weight on every forward pass).
"""

from __future__ import annotations

from functools import partial

import torch
from timing import interleaved_medians, ratio_row

from lora_course.nf4 import dequantize_nf4, quantize_nf4


def rows(size: int = 4096, repeats: int = 7) -> list[dict]:
    import bitsandbytes.functional as bnbf

    torch.manual_seed(0)
    weight = torch.randn(size, size) * 0.02  # (out, in), a typical weight scale
    ours = quantize_nf4(weight, blocksize=64)
    packed, state = bnbf.quantize_4bit(weight, blocksize=64, quant_type="nf4")
    assert torch.equal(ours.packed.flatten(), packed.flatten()), "packed bytes differ"
    assert torch.equal(ours.absmax, state.absmax), "absmax differs"
    assert torch.equal(dequantize_nf4(ours), bnbf.dequantize_4bit(packed, state)), "values differ"

    quant = interleaved_medians(
        {
            "ours": partial(quantize_nf4, weight, blocksize=64),
            "bnb": partial(bnbf.quantize_4bit, weight, blocksize=64, quant_type="nf4"),
        },
        repeats,
    )
    dequant = interleaved_medians(
        {
            "ours": partial(dequantize_nf4, ours),
            "bnb": partial(bnbf.dequantize_4bit, packed, state),
        },
        repeats,
    )
    shape = f"{size}x{size}"
    return [
        ratio_row(
            4,
            f"NF4 quantize {shape} (bit-exact): ours / bitsandbytes",
            quant,
            "ours",
            "bnb",
            limit=1.5,
        ),
        ratio_row(
            4,
            f"NF4 dequantize {shape} (bit-exact): ours / bitsandbytes",
            dequant,
            "ours",
            "bnb",
            limit=1.5,
        ),
    ]
