"""Row 9: the training-memory estimate against the measured peak of one LoRA step on this CPU.

Each measurement is ``lora_course.machinery.memory_evidence.measure_step``: one step in a fresh
Python process (PEFT LoRA, fp32, r=8 on every linear layer, AdamW), after a warm-up step; the peak
resident memory (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the resident memory
just before the step, with glibc mapping every block over 64 KiB on its own so freed tensors
leave. Beside it, the bytes autograd saves for the backward pass (``saved_tensors_hooks``):
the activations alone, exactly. Models: the tiny Llama, and a wider random-weight Llama whose
activations dominate; each at two sequence lengths, with and without gradient checkpointing.

Estimated = activations + logits and loss + gradients from ``lora_course.training_memory``
(fp32 compute, fp32 adapters): what the step adds above weights, adapters and optimizer state.
Target: within 15 %.
"""

from __future__ import annotations

from lora_course.machinery.memory_evidence import measure_step, step_comparison

TARGET = 0.15
# (label, sizes or None for the tiny model, batch, sequence lengths)
MODELS = [
    ("tiny-llama", None, 4, (128, 256)),
    (
        "random h512 L4 V8000",
        dict(h=512, i=1376, layers=4, heads=8, kv=2, vocab=8000),
        4,
        (128, 512),
    ),
]


def table(models=MODELS) -> list[dict]:
    """One row per (model, sequence length, checkpointing): measured and estimated bytes."""
    rows = []
    for label, sizes, batch, seq_lens in models:
        for seq_len in seq_lens:
            for checkpointing in (False, True):
                spec = dict(
                    method="lora",
                    sizes=sizes,
                    batch=batch,
                    seq_len=seq_len,
                    checkpointing=checkpointing,
                )
                parts = step_comparison(spec, measure_step(spec)).set_index("part")
                saved, step = parts.loc["saved for backward"], parts.loc["step above baseline"]
                rows.append(
                    {
                        "model": label,
                        "batch x seq": f"{batch} x {seq_len}",
                        "checkpointing": checkpointing,
                        "saved_mb": saved["measured_bytes"] / 1e6,
                        "saved_est_mb": saved["estimated_bytes"] / 1e6,
                        "step_mb": step["measured_bytes"] / 1e6,
                        "step_est_mb": step["estimated_bytes"] / 1e6,
                        "error": step["ratio"] - 1,
                    }
                )
    return rows


def rows(models=MODELS) -> list[dict]:
    """``make bench`` rows: the worst relative error of the estimated step peak."""
    measured = table(models)
    worst = max(measured, key=lambda r: abs(r["error"]))
    detail = "; ".join(
        f"{r['model']} {r['batch x seq']}{' ckpt' if r['checkpointing'] else ''}: "
        f"{r['step_mb']:.0f} MB measured, {r['step_est_mb']:.0f} estimated"
        for r in measured
    )
    return [
        {
            "row": 9,
            "what": "LoRA step peak above baseline (CPU, RSS): |estimate / measured - 1|, worst",
            "value": abs(worst["error"]),
            "target": f"<= {TARGET}",
            "met": abs(worst["error"]) <= TARGET,
            "detail": detail,
        }
    ]


if __name__ == "__main__":
    import pandas as pd

    print(pd.DataFrame(table()).round(3).to_string(index=False))
