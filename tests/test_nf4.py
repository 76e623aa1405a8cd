"""NF4 from scratch against bitsandbytes on CPU: bytes equal, values equal, bits counted."""

import pytest
import torch

from lora_course import nf4

F = pytest.importorskip("bitsandbytes.functional")


@pytest.fixture(autouse=True, scope="module")
def eager_bitsandbytes():
    """bitsandbytes wraps its reference dequantization in torch.compile, which recompiles for
    every shape (seconds each); the eager function computes the same values."""
    import torch._dynamo

    before = torch._dynamo.config.disable
    torch._dynamo.config.disable = True
    yield
    torch._dynamo.config.disable = before


DTYPES = [torch.float32, torch.float16, torch.bfloat16]
FACTS_NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]  # fmt: skip


def bnb_dequantize(packed, state):
    """bitsandbytes' dequantization. Its CPU kernel is wrong for even rows that are not a
    multiple of the block size (measured in 0.50.2); there we use its reference torch path."""
    rows_ok = state.shape[-1] % 2 == 1 or state.shape[-1] % state.blocksize == 0
    if rows_ok:
        return F.dequantize_4bit(packed, state).reshape(state.shape)
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute

    absmax = state.absmax
    if state.nested:
        absmax = F.dequantize_blockwise(state.absmax, state.state2) + state.offset
    code = F.get_4bit_type("nf4", device="cpu")
    args = (packed.reshape(-1), absmax, code, state.blocksize, state.shape, state.dtype)
    return _dequantize_4bit_compute(*args).reshape(state.shape)


def assert_same_as_bnb(weight: torch.Tensor, double_quant: bool):
    packed, state = F.quantize_4bit(weight, quant_type="nf4", compress_statistics=double_quant)
    ours = nf4.quantize_nf4(weight, double_quant=double_quant)
    assert torch.equal(ours.packed, packed.reshape(-1))
    assert torch.equal(ours.absmax, state.absmax)
    if double_quant:
        assert torch.equal(ours.absmax_scale, state.state2.absmax)
        assert torch.equal(ours.offset, state.offset)
        assert torch.equal(
            ours.fp32_absmax(), F.dequantize_blockwise(state.absmax, state.state2) + state.offset
        )
    assert torch.equal(nf4.dequantize_nf4(ours), bnb_dequantize(packed, state))


def test_code_book_equals_bitsandbytes_and_facts():
    code = nf4.nf4_code()
    assert torch.equal(code, F.get_4bit_type("nf4", device="cpu"))
    assert code.tolist() == FACTS_NF4
    assert (code < 0).sum() == 7 and (code == 0).sum() == 1 and (code > 0).sum() == 8


def test_other_code_books_equal_bitsandbytes():
    assert torch.equal(nf4.dynamic_code(), F.create_dynamic_map())
    assert torch.equal(nf4.fp4_code(), F.get_4bit_type("fp4", device="cpu").sort().values)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", [(64,), (1,), (63,), (65,), (3, 7), (128, 96), (96, 128), (1000, 33), (257 * 64 + 5,)]
)
@pytest.mark.parametrize("double_quant", [False, True])
def test_bytes_equal_bitsandbytes(dtype, shape, double_quant):
    torch.manual_seed(sum(shape))
    assert_same_as_bnb((torch.randn(shape) * 0.02).to(dtype), double_quant)


@pytest.mark.parametrize("blocksize", [32, 128, 256])
def test_other_block_sizes_and_many_lookup_chunks(blocksize):
    """Dequantization looks bytes up chunk by chunk: sizes over several chunks, a ragged last
    chunk and a partial last block, for block sizes other than the default."""
    torch.manual_seed(blocksize)
    n = 3 * nf4._LOOKUP_CHUNK * 2 + 2 * blocksize + 7  # codes: 3 full chunks of bytes and more
    for dtype, double_quant in [(torch.float32, False), (torch.bfloat16, True)]:
        weight = (torch.randn(n) * 0.02).to(dtype)
        packed, state = F.quantize_4bit(
            weight, blocksize=blocksize, quant_type="nf4", compress_statistics=double_quant
        )
        ours = nf4.quantize_nf4(weight, blocksize=blocksize, double_quant=double_quant)
        assert torch.equal(ours.packed, packed.reshape(-1))
        assert torch.equal(nf4.dequantize_nf4(ours), bnb_dequantize(packed, state))


def test_many_random_tensors():
    gen = torch.Generator().manual_seed(0)
    for i in range(24):
        rows, cols = torch.randint(1, 200, (2,), generator=gen).tolist()
        scale = 10.0 ** torch.randint(-4, 3, (1,), generator=gen).item()
        weight = torch.randn(rows, cols, generator=gen) * scale
        assert_same_as_bnb(weight.to(DTYPES[i % 3]), double_quant=i % 2 == 1)


@pytest.mark.parametrize("double_quant", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_and_constant_blocks(dtype, double_quant):
    blocks = [torch.zeros(64), torch.full((64,), 0.5), torch.full((64,), -3.0), torch.randn(64)]
    for weight in [torch.zeros(64 * 5), torch.cat(blocks), torch.cat(blocks + [torch.zeros(10)])]:
        assert_same_as_bnb(weight.to(dtype), double_quant)
    assert_same_as_bnb(torch.ones(64 * 300, dtype=dtype), double_quant)  # every absmax equal


def test_values_exactly_between_two_codes_take_the_lower_code():
    code = nf4.nf4_code()
    midpoints = (code[:-1] + code[1:]) / 2
    for scale in (1.0, 2.0, 0.25):  # powers of two keep x / absmax exact
        block = torch.cat([torch.ones(1), midpoints, -midpoints, midpoints.flip(0)]) * scale
        block = torch.cat([block, torch.zeros(64 - block.numel())])
        tail = block[:40]  # a partial last block: divided, not multiplied by a reciprocal
        for weight in (block, torch.cat([block, tail])):
            assert_same_as_bnb(weight, double_quant=False)
    ours = nf4.unpack_4bit(nf4.quantize_nf4(torch.cat([torch.ones(1), midpoints])).packed, 16)
    assert ours[1:].tolist() == list(range(15))  # midpoint i -> code i, the lower one


def test_pack_puts_the_first_value_in_the_high_nibble():
    assert nf4.pack_4bit(torch.tensor([1, 2, 15, 0])).tolist() == [0x12, 0xF0]
    codes = torch.randint(0, 16, (100,), dtype=torch.uint8)
    assert torch.equal(nf4.unpack_4bit(nf4.pack_4bit(codes)), codes)
    with pytest.raises(ValueError, match="even number"):
        nf4.pack_4bit(torch.tensor([1, 2, 3]))


def test_bits_per_parameter():
    weight = torch.randn(64 * 256 * 4)
    assert nf4.bits_per_parameter(nf4.quantize_nf4(weight)) == 4.5
    dq = nf4.bits_per_parameter(nf4.quantize_nf4(weight, double_quant=True))
    expected = 4 + 8 / 64 + 32 / (64 * 256) + 32 / weight.numel()  # + one fp32 offset
    assert dq == pytest.approx(expected, abs=1e-12)
    assert round(dq, 3) == 4.127


def test_quantization_error_on_gaussian_weights():
    torch.manual_seed(0)
    table = nf4.quantization_error_table(torch.randn(512, 512)).set_index("scheme")
    err = table["relative_rmse"]
    assert err["nf4"] < err["fp4"]  # the normal-quantile code book fits Gaussian weights better
    assert err["nf4+dq"] == pytest.approx(err["nf4"], rel=0.01)  # double quant costs almost nothing
    assert err["int8-block"] < err["int8-row"] < err["nf4"]
    assert table.loc["nf4", "bits_per_param"] == 4.5


def test_errors_name_the_problem():
    with pytest.raises(TypeError, match="float32/float16/bfloat16"):
        nf4.quantize_nf4(torch.arange(10))
    with pytest.raises(ValueError, match="blocksize"):
        nf4.quantize_nf4(torch.randn(10), blocksize=48)
    with pytest.raises(ValueError, match="choose one of"):
        nf4.quantization_error(torch.randn(64), "int3")


def test_code_book_plot_draws_one_line_per_value():
    from lora_course.plots import plot_nf4_code_book

    fig = plot_nf4_code_book(nf4.nf4_code())
    assert len(fig.axes[0].lines) == 1 + 16  # the density and 16 code values


def test_the_outer_quantile_is_where_the_code_book_puts_one():
    from statistics import NormalDist

    from lora_course.nf4 import NF4_OFFSET, outer_quantile

    sigma = outer_quantile()
    assert sigma == pytest.approx(NormalDist().inv_cdf(NF4_OFFSET), rel=1e-9)  # stdlib reference
    assert round(sigma, 2) == 1.85  # the figure notebook 04 quotes
    with pytest.raises(ValueError, match="offset must lie in"):
        outer_quantile(0.4)
