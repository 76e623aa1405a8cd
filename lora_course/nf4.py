"""NF4 from scratch: the 4-bit NormalFloat data type of QLoRA, in plain torch.

QLoRA (Dettmers et al. 2023, arXiv 2305.14314) stores a frozen weight in three steps:

1. **Code book** (section 3, "4-bit NormalFloat Quantization"): 16 values at quantiles of the
   standard normal, normalised to [-1, 1], with an exact zero: 7 negative, zero, 8 positive.
2. **Blockwise absmax** (section 2, "Block-wise k-bit Quantization"): the weight is cut into
   blocks of 64 values; each block is divided by its largest magnitude (one fp32 ``absmax``
   per block) and every value becomes the index of its nearest code. Two 4-bit indices share
   one byte, the first value in the high nibble. Cost: 4 + 32/64 = 4.5 bits per weight.
3. **Double quantization** (section 3, "Double Quantization"): the fp32 absmax values are
   themselves quantized to 8 bits in blocks of 256, after subtracting their mean, with the
   signed 8-bit "dynamic" code book of Dettmers 2015 (arXiv 1511.04561): 4 + 8/64 +
   32/(64*256) = 4.127 bits per weight.

The code book puts +-1 at NF4's outermost quantile of N(0, 1) (about 1.85 standard
deviations); a block of 64 normal values has its absmax near 2.6, so the scaled values crowd
the middle and the codes near zero are used most, +-1 least (notebook 04 counts them).

Every function here reproduces ``bitsandbytes.functional.quantize_4bit(..., quant_type="nf4")``
on CPU byte for byte (checked in ``tests/test_nf4.py``), including how it breaks ties and
treats all-zero blocks. bitsandbytes is never imported here; the tests import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import pandas as pd
import torch

__all__ = [
    "NF4_OFFSET",
    "outer_quantile",
    "nf4_code",
    "fp4_code",
    "dynamic_code",
    "NF4Tensor",
    "quantize_nf4",
    "dequantize_nf4",
    "pack_4bit",
    "unpack_4bit",
    "bits_per_parameter",
    "quantization_error",
    "quantization_error_table",
]

NF4_OFFSET = 0.9677083
"""Outermost quantile of the NF4 code book (bitsandbytes' ``create_normal_map`` default)."""


def outer_quantile(offset: float = NF4_OFFSET) -> float:
    """The standard normal quantile at probability ``offset``: where the code book's +-1 sits,
    in standard deviations (about 1.848 at bitsandbytes' offset 0.9677083)."""
    if not 0.5 < offset < 1.0:
        raise ValueError(f"offset must lie in (0.5, 1), got {offset}")
    return float(torch.special.ndtri(torch.tensor(offset, dtype=torch.float64)))


_TINY = 1e-38  # bitsandbytes floors a block's absmax here before taking its reciprocal


def nf4_code(offset: float = NF4_OFFSET) -> torch.Tensor:
    """The 16 NF4 values, sorted, fp32, shape (16,).

    8 quantiles of N(0, 1) at probabilities from ``offset`` down to 0.5 (exclusive) give the
    positive side, 7 give the negative side, plus an exact 0; all divided by the largest.
    The probabilities are fp32 (as bitsandbytes builds them), the quantiles fp64.
    """
    if not 0.5 < offset < 1.0:
        raise ValueError(f"offset must lie in (0.5, 1), got {offset}")
    positive = torch.linspace(offset, 0.5, 9)[:-1].double()  # 8 probabilities
    negative = torch.linspace(offset, 0.5, 8)[:-1].double()  # 7 probabilities
    values = torch.cat([torch.special.ndtri(positive), -torch.special.ndtri(negative)])
    values = torch.cat([values.float(), torch.zeros(1)]).sort().values
    return values / values.max()


def fp4_code() -> torch.Tensor:
    """bitsandbytes' FP4 values (1 sign, 2 exponent, 1 mantissa bit), sorted, shape (16,)."""
    magnitudes = torch.tensor([0.0, 0.0625, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0]) / 12.0
    return torch.cat([-magnitudes, magnitudes]).sort().values


def dynamic_code() -> torch.Tensor:
    """The signed 8-bit dynamic code book (256 values, sorted) used for double quantization.

    For exponent e = 0..6 the values 10**(e-6) * m, where m runs over the 2**e midpoints of a
    linear grid on [0.1, 1]; each with both signs; plus 0 and 1 (Dettmers 2015, section 3).
    """
    values = [0.0, 1.0]
    for e in range(7):
        grid = torch.linspace(0.1, 1.0, 2**e + 1)
        mids = (grid[:-1] + grid[1:]) / 2.0
        scaled = (10.0 ** (e - 6) * mids).tolist()
        values += scaled + [-v for v in scaled]
    return torch.tensor(sorted(values), dtype=torch.float32)


def pack_4bit(codes: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes (uint8 in 0..15) per byte, the first in the high nibble."""
    codes = codes.reshape(-1).to(torch.uint8)
    if codes.numel() % 2:
        raise ValueError("pack_4bit needs an even number of codes; pad with the zero code first")
    return (codes[0::2] << 4) | codes[1::2]


def unpack_4bit(packed: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """Inverse of ``pack_4bit``: (bytes,) uint8 -> (2 * bytes,) or the first ``n`` codes."""
    packed = packed.reshape(-1)
    codes = torch.stack([packed >> 4, packed & 0x0F], dim=1).reshape(-1)
    return codes if n is None else codes[:n]


def _block_absmax_scale(x: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-block absmax and the values scaled into [-1, 1], as bitsandbytes' CPU path does.

    Full blocks are multiplied by the reciprocal of their (floored) absmax and store the raw
    absmax; a final partial block is divided by its floored absmax and stores that floor.
    Keeping both details is what makes the bytes match, ties and zero blocks included.
    """
    n = x.numel()
    full = n - n % blocksize
    blocks = x[:full].reshape(-1, blocksize)  # (n_blocks, blocksize)
    absmax = blocks.abs().amax(dim=1)
    scaled = (blocks * (1.0 / absmax.clamp(min=_TINY)).unsqueeze(1)).clamp(-1, 1).reshape(-1)
    if full < n:
        tail_max = x[full:].abs().max().clamp(min=_TINY)
        absmax = torch.cat([absmax, tail_max.reshape(1)])
        scaled = torch.cat([scaled, (x[full:] / tail_max).clamp(-1, 1)])
    return absmax, scaled


def _nearest_code(scaled: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code value; a value exactly on a midpoint takes the lower code."""
    midpoints = (code[:-1] + code[1:]) / 2  # fp32, as bitsandbytes computes them
    return torch.searchsorted(midpoints, scaled, right=False)


@cache
def _dynamic_lookup_table(size: int = 65536) -> torch.Tensor:
    """For each of ``size`` evenly spaced points on [-1, 1], the index of its nearest code."""
    code = dynamic_code()
    grid = (torch.arange(size, dtype=torch.float64) / ((size - 1) / 2) - 1).float()
    chunks = [(g.unsqueeze(1) - code).abs().argmin(dim=1) for g in grid.split(8192)]
    return torch.cat(chunks)


def _quantize_8bit_blockwise(x: torch.Tensor, blocksize: int):
    """Blockwise 8-bit quantization as bitsandbytes' CPU kernel does it (for double quant).

    Each value is divided by its block's absmax, then rounded onto a grid of 65,536 points on
    [-1, 1]; a table gives each grid point its nearest code. That is nearest-code rounding to
    within half a grid step (1.5e-5), and it is what makes the absmax bytes equal to
    bitsandbytes' (measured: exact nearest-code rounding differs in about 1 value in 1,000).
    A block that is all zero divides 0 by 0 and gets code 0.
    """
    n = x.numel()
    n_blocks = math.ceil(n / blocksize)
    padded = torch.nn.functional.pad(x, (0, n_blocks * blocksize - n)).reshape(n_blocks, -1)
    absmax = padded.abs().amax(dim=1)
    normed = (padded / absmax.unsqueeze(1)).reshape(-1)[:n]
    table = _dynamic_lookup_table()
    half_size = (table.numel() - 1) / 2
    slot = torch.floor((normed + 1) * half_size + 0.5).nan_to_num(0).long()
    index = table[slot.clamp(0, table.numel() - 1)]
    return index.to(torch.uint8), absmax


@dataclass
class NF4Tensor:
    """A weight stored as QLoRA stores it. Shapes for n weights in blocks of ``blocksize``:

    - ``packed``: (ceil(n / 2),) uint8, two codes per byte
    - ``absmax``: (ceil(n / blocksize),) fp32, or uint8 codes when double-quantized
    - with double quantization: ``absmax_scale`` (ceil(blocks / 256),) fp32 and ``offset``,
      the fp32 mean subtracted before quantizing the absmax values
    """

    packed: torch.Tensor
    absmax: torch.Tensor
    shape: tuple[int, ...]
    dtype: torch.dtype
    blocksize: int = 64
    absmax_scale: torch.Tensor | None = None
    offset: torch.Tensor | None = None
    absmax_blocksize: int = 256

    @property
    def double_quant(self) -> bool:
        return self.absmax_scale is not None

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor this weight needs besides the shared code books."""
        out = {"packed": self.packed, "absmax": self.absmax}
        if self.double_quant:
            out |= {"absmax_scale": self.absmax_scale, "offset": self.offset}
        return out

    def fp32_absmax(self) -> torch.Tensor:
        """The per-block absmax in fp32 (decoded first when double-quantized)."""
        if not self.double_quant:
            return self.absmax
        code = dynamic_code()[self.absmax.long()]
        scale = self.absmax_scale.repeat_interleave(self.absmax_blocksize)[: code.numel()]
        return code * scale + self.offset


def quantize_nf4(
    weight: torch.Tensor, blocksize: int = 64, double_quant: bool = False
) -> NF4Tensor:
    """Quantize ``weight`` (any shape; fp32, fp16 or bf16) to NF4.

    Equal, byte for byte, to ``bitsandbytes.functional.quantize_4bit(weight, blocksize=...,
    quant_type="nf4", compress_statistics=double_quant)`` on CPU (QLoRA, section 3).
    """
    if not isinstance(weight, torch.Tensor) or weight.dtype not in (
        torch.float32,
        torch.float16,
        torch.bfloat16,
    ):
        got = weight.dtype if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise TypeError(f"weight must be a float32/float16/bfloat16 tensor, got {got}")
    if weight.numel() == 0:
        raise ValueError("weight is empty; there is nothing to quantize")
    if blocksize not in (32, 64, 128, 256, 512, 1024, 2048, 4096):
        raise ValueError(f"blocksize must be a power of two from 32 to 4096, got {blocksize}")
    x = weight.detach().reshape(-1).float()
    absmax, scaled = _block_absmax_scale(x, blocksize)
    if scaled.numel() % 2:
        scaled = torch.cat([scaled, scaled.new_zeros(1)])  # pad: the code of 0.0
    packed = pack_4bit(_nearest_code(scaled, nf4_code()))
    result = NF4Tensor(packed, absmax, tuple(weight.shape), weight.dtype, blocksize)
    if double_quant:
        offset = absmax.mean()
        result.absmax, result.absmax_scale = _quantize_8bit_blockwise(
            absmax - offset, result.absmax_blocksize
        )
        result.offset = offset
    return result


@cache
def _nf4_byte_table() -> torch.Tensor:
    """For each byte 0..255 its two NF4 values (high nibble first): (256, 2) fp32, viewed as
    (256,) int64 so that one lookup copies one 8-byte element instead of a two-value row."""
    code, byte = nf4_code(), torch.arange(256)
    pairs = torch.stack([code[byte >> 4], code[byte & 0x0F]], dim=1)  # (256, 2)
    return pairs.view(torch.int64).reshape(256)


# Bytes per lookup. The chunk's int32 indices stay in the CPU cache instead of filling a fresh
# 4-bytes-per-byte array, and a chunk under torch's parallel grain (32768) runs on one thread:
# on a busy machine, waking threads for every chunk cost more than it saved (measured).
_LOOKUP_CHUNK = 16384


def _decode_bytes(packed: torch.Tensor, size: int) -> torch.Tensor:
    """(bytes,) uint8 -> (2 * size,) fp32 NF4 code values, one table lookup per byte; the
    bytes past ``packed`` decode as zeros (``size`` >= the number of bytes)."""
    table, n_bytes = _nf4_byte_table(), packed.numel()
    pairs = torch.empty(size, dtype=torch.int64)  # two fp32 values per byte
    pairs[n_bytes:] = 0
    index = torch.empty(min(_LOOKUP_CHUNK, n_bytes), dtype=torch.int32)
    for start in range(0, n_bytes, _LOOKUP_CHUNK):
        part = packed[start : start + _LOOKUP_CHUNK]
        chunk = index[: part.numel()].copy_(part)
        torch.index_select(table, 0, chunk, out=pairs[start : start + part.numel()])
    return pairs.view(torch.float32)


def dequantize_nf4(q: NF4Tensor) -> torch.Tensor:
    """Back to a dense tensor of ``q.shape`` and ``q.dtype``: code value x block absmax (fp32),
    rounded once to the original dtype, as bitsandbytes' ``dequantize_4bit`` does."""
    n = math.prod(q.shape)
    absmax = q.fp32_absmax()  # (blocks,)
    # Whole blocks (the last one padded), so that each block is one row of the product.
    values = _decode_bytes(q.packed.reshape(-1), absmax.numel() * q.blocksize // 2)
    values = values.view(-1, q.blocksize).mul_(absmax.unsqueeze(1))  # (blocks, blocksize)
    return values.view(-1)[:n].to(q.dtype).view(q.shape)


def bits_per_parameter(q: NF4Tensor) -> float:
    """Stored bits per weight, counted from the actual tensors (code books excluded: they are
    shared constants). 4.5 for blocks of 64; about 4.127 with double quantization."""
    stored = sum(t.numel() * t.element_size() for t in q.tensors().values())
    return 8 * stored / math.prod(q.shape)


def _absmax_roundtrip(x: torch.Tensor, code: torch.Tensor, blocksize: int) -> torch.Tensor:
    """Quantize-dequantize fp32 ``x`` (n,) blockwise to the nearest value of ``code``."""
    absmax, scaled = _block_absmax_scale(x, blocksize)
    values = code[_nearest_code(scaled, code)]
    return values * absmax.repeat_interleave(blocksize)[: x.numel()]


def _int8_roundtrip(w: torch.Tensor, per: str, blocksize: int) -> torch.Tensor:
    """Symmetric absmax int8: round(127 * w / absmax) per row (LLM.int8's weight scheme) or per
    block of ``blocksize`` values."""
    groups = w.reshape(w.shape[0], -1) if per == "row" else w.reshape(-1, blocksize)
    absmax = groups.abs().amax(dim=1, keepdim=True).clamp(min=_TINY)
    return (torch.round(groups / absmax * 127) * absmax / 127).reshape(w.shape)


def quantization_error(weight: torch.Tensor, scheme: str, blocksize: int = 64) -> float:
    """Relative RMSE ||W - Q(W)|| / ||W|| for one scheme.

    Schemes: ``"nf4"``, ``"nf4+dq"``, ``"fp4"`` (blocks of ``blocksize``, fp32 absmax),
    ``"int8-row"`` (one absmax per row), ``"int8-block"`` (one absmax per block).
    """
    w = weight.detach().float()
    if scheme in ("nf4", "nf4+dq"):
        approx = dequantize_nf4(quantize_nf4(w, blocksize, double_quant=scheme == "nf4+dq"))
    elif scheme == "fp4":
        approx = _absmax_roundtrip(w.reshape(-1), fp4_code(), blocksize).reshape(w.shape)
    elif scheme in ("int8-row", "int8-block"):
        if scheme == "int8-block" and w.numel() % blocksize:
            raise ValueError(f"int8-block needs a size that is a multiple of {blocksize}")
        approx = _int8_roundtrip(w, scheme.removeprefix("int8-"), blocksize)
    else:
        valid = ["nf4", "nf4+dq", "fp4", "int8-row", "int8-block"]
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {valid}")
    return ((w - approx).norm() / w.norm()).item()


def quantization_error_table(weight: torch.Tensor, blocksize: int = 64) -> pd.DataFrame:
    """Relative RMSE and storage bits per weight of each scheme on ``weight`` (2-D)."""
    n_rows = weight.shape[0]
    nf4 = quantize_nf4(weight, blocksize)
    bits = {
        "nf4": bits_per_parameter(nf4),
        "nf4+dq": bits_per_parameter(quantize_nf4(weight, blocksize, double_quant=True)),
        "fp4": bits_per_parameter(nf4),  # same layout, other code book
        "int8-row": 8 + 32 * n_rows / weight.numel(),
        "int8-block": 8 + 32 / blocksize,
    }
    rows = [
        {
            "scheme": s,
            "bits_per_param": b,
            "relative_rmse": quantization_error(weight, s, blocksize),
        }
        for s, b in bits.items()
    ]
    return pd.DataFrame(rows)
