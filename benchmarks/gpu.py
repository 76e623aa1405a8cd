"""The lesson's QLoRA at real size, measured on a GPU: ``make bench-gpu``.

On shape-true models (``lora_course.machinery.shape_true``: the real layout, random weights,
built once and cached; nothing is downloaded):

1. Llama-3.1-8B in the lesson's exact ``BitsAndBytesConfig`` (nf4, bf16 compute, double
   quantization): ``get_memory_footprint()`` + quantization state against the calculator.
2. One QLoRA step (PEFT LoRA r=8 on every linear layer, prepared with
   ``prepare_model_for_kbit_training``) at 1 x 512 with gradient checkpointing:
   ``torch.cuda.max_memory_allocated`` against ``training_memory``'s peak (the lesson's
   "7B in about 6 GB", measured), and tokens per second with bf16 and with fp32 compute.
3. Llama-3.2-1B: LoRA (bf16 base) and QLoRA steps, the same comparison.
4. ``--notebooks``: notebooks 03 and 06 top to bottom with ``LORA_COURSE_MODEL`` set to the
   8B folder (the test in ``tests/real_path``, pointed at that folder).

Without CUDA it says so and exits 0 (nothing measured). ``--device cpu --model Llama-3.2-1B
--scaled`` runs every step on the CPU with a scaled-down layout, so the script is known to work
before a GPU is lent; on a CPU the peak is the process's resident memory above its baseline
(``/proc/self/status``), compared with the estimate's step parts, as
``lora_course.machinery.memory_evidence`` does.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lora_course.machinery.hardware import process_status_bytes  # noqa: E402
from lora_course.machinery.memory_evidence import _with_lora  # noqa: E402
from lora_course.machinery.shape_true import SMALL_1B, shape_true_model  # noqa: E402
from lora_course.memory import measured_quant_state_bytes, weight_footprint  # noqa: E402
from lora_course.models import load_model, quantization_config  # noqa: E402
from lora_course.training_memory import peak_bytes, training_memory  # noqa: E402

_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _lesson_config(compute: torch.dtype):
    config = quantization_config("nf4")  # the lesson's, field for field (bf16 compute)
    config.bnb_4bit_compute_dtype = compute
    return config


def _memory(device: str) -> int:
    if device == "cpu":
        return process_status_bytes("VmHWM")
    return torch.cuda.max_memory_allocated()


def _reset(device: str) -> int:
    """Reset the peak counter; return the memory in use now."""
    if device == "cpu":
        Path("/proc/self/clear_refs").write_text("5")
        return process_status_bytes("VmRSS")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def footprint(folder: Path, name: str, device: str) -> dict:
    model, _ = load_model(str(folder), quantization=_lesson_config(torch.bfloat16), device=device)
    calc = weight_footprint(model.config, "nf4+dq", keep_dtype=torch.bfloat16)
    row = {
        "model": name,
        "what": "footprint, the lesson's BitsAndBytesConfig",
        "measured": model.get_memory_footprint() + measured_quant_state_bytes(model),
        "estimated": calc.total_bytes,
    }
    del model
    return row


def step(folder, name, method, compute, device, batch, seq_len, checkpointing, repeats) -> dict:
    """One LoRA or QLoRA training step: its peak memory against training_memory, and tokens/s."""
    dtype = _DTYPES[compute]
    if method == "qlora":
        model, _ = load_model(str(folder), quantization=_lesson_config(dtype), device=device)
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model, _ = load_model(str(folder), device=device, dtype=dtype)
    model = _with_lora(model, checkpointing)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    where = next(model.parameters()).device
    vocab = model.config.vocab_size

    def one(ids):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    torch.manual_seed(0)
    one(torch.randint(0, vocab, (1, 16), device=where))  # warm-up: kernels and optimizer state
    ids = torch.randint(0, vocab, (batch, seq_len), device=where)
    baseline = _reset(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        one(ids)
        if device != "cpu":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    peak = _memory(device)
    table = training_memory(
        model.config,
        method,
        batch_size=batch,
        seq_len=seq_len,
        gradient_checkpointing=checkpointing,
        compute_dtype=dtype,
    ).set_index("part")["bytes"]
    if device == "cpu":  # resident memory: what the step adds above its baseline
        measured = peak - baseline
        parts = ["activations", "logits and loss", "gradients", "dequantized weight"]
        estimated = int(table.reindex(parts).fillna(0).sum())
        what = "step above baseline (resident memory)"
    else:  # allocated tensors: the whole peak, weights and optimizer state included
        measured, estimated, what = peak, peak_bytes(table.reset_index()), "max_memory_allocated"
    return {
        "model": name,
        "what": f"{method} step {batch} x {seq_len}, checkpointing {checkpointing}, "
        f"{compute} compute: {what}",
        "measured": measured,
        "estimated": estimated,
        "tokens_per_s": batch * seq_len / statistics.median(seconds),
    }


def notebooks(folder: Path) -> int:
    env = dict(os.environ, LORA_COURSE_MODEL=str(folder), LORA_COURSE_REAL_PATH="1")
    command = [sys.executable, "-m", "pytest", "-rs", "-q", "tests/real_path", "-k", "notebook"]
    return subprocess.run(command, cwd=ROOT, env=env).returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument(
        "--model",
        action="append",
        help="data/model-configs names (default: Llama-3.1-8B and Llama-3.2-1B)",
    )
    parser.add_argument("--scaled", action="store_true", help="scale layouts down (SMALL_1B)")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per row")
    parser.add_argument("--notebooks", action="store_true", help="run 03 and 06 on the folder")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.device != "cpu" and not torch.cuda.is_available():
        print("bench-gpu: torch sees no CUDA GPU here, so nothing was measured. Run it on a "
              "machine with a GPU, or `python benchmarks/gpu.py --device cpu --model "
              "Llama-3.2-1B --scaled` to check the script on a CPU.")  # fmt: skip
        return 0
    device = "cpu" if args.device == "cpu" else "cuda:0"
    if device == "cpu":
        torch.set_num_threads(1)
    names = args.model or ["Llama-3.1-8B", "Llama-3.2-1B"]
    rows = []
    for name in names:
        folder = shape_true_model(name, "bf16", SMALL_1B if args.scaled else None)
        label = f"{name} (scaled: {SMALL_1B})" if args.scaled else name
        rows.append(footprint(folder, label, device))
        if name == "Llama-3.1-8B":  # the lesson's recipe: QLoRA, bf16 then fp32 compute
            runs = [("qlora", "bf16"), ("qlora", "fp32")]
        else:
            runs = [("lora", "bf16"), ("qlora", "bf16"), ("qlora", "fp32")]
        for method, compute in runs:
            rows.append(
                step(folder, label, method, compute, device, 1, args.seq_len, True, args.repeats)
            )
            gc.collect()  # the last step's model goes before the next one loads
            if device != "cpu":
                torch.cuda.empty_cache()
        for row in rows[-len(runs) - 1 :]:
            ratio = row["estimated"] / row["measured"]
            speed = f", {row['tokens_per_s']:.0f} tokens/s" if "tokens_per_s" in row else ""
            print(f"{row['model']}: {row['what']}: measured {row['measured']:,} B, estimated "
                  f"{row['estimated']:,} B (x{ratio:.3f}){speed}", flush=True)  # fmt: skip
        if args.notebooks and name == names[0]:
            if notebooks(folder) != 0:
                print("notebooks 03/06 on", folder, "FAILED (see above)")
                return 1
    if device == "cpu":
        print("On a CPU the step figures are the process's resident memory, in which freed blocks "
              "are reused from step to step: at a few MB they are allocator noise, not a check "
              "of the estimate (make bench-real-scale measures the 1B in fresh processes). "
              "This run shows that the script works end to end.")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
