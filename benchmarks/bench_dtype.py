"""Row 7: a QLoRA training step of the tiny model with bf16 vs fp32 compute (``nf4`` base).

The lesson computes 4-bit layers in bf16, a GPU choice. On a CPU without native bf16 the same
step costs several times more; ``load_model("nf4")`` therefore picks fp32 there
(``lora_course.machinery.hardware``). Both steps are measured in one process, interleaved,
median of the repetitions (``timing.interleaved_medians``), one torch thread. The row is
measured twice: as this CPU is, and as an AVX2 CPU without AVX512-BF16 runs it (``EMULATE``);
each in its own process, since torch reads the variables when it loads.

``EMULATE`` limits torch's CPU code paths (oneDNN, ATen, MKL) to AVX2.
``ONEDNN_MAX_CPU_ISA=AVX2`` alone makes oneDNN emulate bf16, but ATen still reports AVX512, so
bitsandbytes keeps its AVX512 int8 matmul (``torch._int_mm``), which oneDNN then runs without
VNNI and gets wrong (on this EPYC, sums off by up to 1e5; notebook 03's int8 logits drifted
1.2 % instead of 0.4 %). ``ATEN_CPU_CAPABILITY=avx2`` makes torch report AVX2 and bitsandbytes
take its exact fp32 path, as on a real AVX2 CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EMULATE = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}


def _step(compute_dtype, batch_size: int = 16):
    """One optimizer step of LoRA (r=8, all linear) on the nf4 tiny model, as a callable."""
    import torch
    from transformers import BitsAndBytesConfig

    from lora_course import add_lora, load_model, load_task
    from lora_course.data import batches, tokenize_example

    torch.manual_seed(0)
    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_use_double_quant=True,
    )
    model, tokenizer = load_model(quantization=config, device="cpu")
    add_lora(model, "all-linear", rank=8, alpha=16)
    examples = [tokenize_example(tokenizer, ex) for ex in load_task("train")]
    data = batches(examples, batch_size, tokenizer.pad_token_id, seed=0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()

    def step():
        model(**next(data)).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _worker(repeats: int) -> dict:
    import torch
    from timing import interleaved_medians

    from lora_course.machinery.hardware import native_bf16

    torch.set_num_threads(1)
    steps = {"bf16": _step(torch.bfloat16), "fp32": _step(torch.float32)}
    times = interleaved_medians(steps, repeats=repeats, warmup=2)
    return {"times": times, "native": native_bf16()}


def _run(env: dict, repeats: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, str(repeats)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rows(repeats: int = 7) -> list[dict]:
    from timing import ratio_row

    out = []
    for env, label in (({}, "this CPU"), (EMULATE, "AVX2 code paths forced")):
        result = _run(env, repeats)
        bf16 = "native" if result["native"] else "emulated"
        row = ratio_row(
            7,
            f"QLoRA step, bf16 / fp32 compute ({label})",
            result["times"],
            "bf16",
            "fp32",
            target="none",
        )
        out.append({**row, "bf16": bf16})
    return out


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here), str(here.parent)]
    print(json.dumps(_worker(int(sys.argv[1]))))
