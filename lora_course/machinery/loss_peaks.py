"""The loss alone, measured: logits and cross-entropy whole or in chunks of tokens.

``measure_loss_peaks`` measures the peak memory above baseline of one loss's forward and
backward on the tiny model's hidden states, each variant in its own fresh process (the same
way ``memory_evidence.measure_step`` measures a step: ``VmHWM`` reset, glibc told to return
freed blocks), whole or in chunks (``chunked_cross_entropy``): one of the techniques that take
QLoRA below the estimate. ``python -m lora_course.machinery.loss_peaks SPEC`` is the child.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import torch

from lora_course.machinery.hardware import measure_in_fresh_processes, process_status_bytes

__all__ = ["chunked_cross_entropy", "measure_loss_peaks"]


def chunked_cross_entropy(hidden, weight, labels, chunk_size: int = 128):
    """Mean cross-entropy of the logits ``hidden @ weight.T`` against ``labels`` without ever
    holding the logits of all tokens: each chunk of ``chunk_size`` tokens computes its logits
    and loss under ``torch.utils.checkpoint``, so the backward pass keeps only the chunk's
    hidden states and recomputes its logits (what chunked or fused cross-entropy kernels do;
    Liger Kernel, Unsloth and torchtune ship such losses, none of them pinned here).

    ``hidden``: (tokens, h); ``weight``: (vocab, h), the output head; ``labels``: (tokens,),
    -100 for positions without a loss. Equals ``F.cross_entropy(hidden @ weight.T, labels)``.
    """
    from torch.nn import functional as F
    from torch.utils.checkpoint import checkpoint

    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")

    def piece(h, y):
        return F.cross_entropy(h @ weight.T, y, reduction="sum")

    total = sum(
        checkpoint(
            piece, hidden[i : i + chunk_size], labels[i : i + chunk_size], use_reentrant=False
        )
        for i in range(0, hidden.shape[0], chunk_size)
    )
    return total / (labels != -100).sum()


def _loss_child(spec: dict) -> dict:
    """The peak above baseline of one loss's forward and backward on the tiny model's hidden
    states (``spec``: ``tokens``, ``chunk_size``: None for the whole logits at once)."""
    from torch.nn import functional as F

    from lora_course.models import load_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = load_model(device="cpu")[0]
    ids = torch.randint(0, model.config.vocab_size, (1, spec["tokens"]))
    with torch.no_grad():
        hidden = model.model(input_ids=ids).last_hidden_state[0]
    hidden.requires_grad_(True)
    weight = model.lm_head.weight.detach().requires_grad_(True)
    labels = ids[0]

    def loss():
        if spec["chunk_size"] is None:
            return F.cross_entropy(hidden @ weight.T, labels)
        return chunked_cross_entropy(hidden, weight, labels, spec["chunk_size"])

    loss().backward()  # warm-up: the gradients' buffers and the kernels are in the baseline
    value = loss().detach()
    hidden.grad = weight.grad = None
    Path("/proc/self/clear_refs").write_text("5")
    baseline = process_status_bytes("VmRSS")
    loss().backward()
    return {
        "peak": process_status_bytes("VmHWM") - baseline,
        "loss": value.item(),
        "logits_bytes": 4 * spec["tokens"] * model.config.vocab_size,
    }


def measure_loss_peaks(tokens: int = 4096, chunk_sizes=(None, 512, 128)) -> pd.DataFrame:
    """Peak memory above baseline of the loss (logits + cross-entropy, forward and backward)
    on the tiny model's hidden states for ``tokens`` tokens, whole (None) and in chunks, each
    in its own fresh process (``_loss_child``). Columns: ``chunk_size``, ``peak_bytes``,
    ``loss``, ``logits_bytes`` (one fp32 copy of all the logits)."""
    labels = {chunk: f"chunk_size={chunk}" for chunk in chunk_sizes}
    measured = measure_in_fresh_processes(
        "lora_course.machinery.loss_peaks",
        {labels[chunk]: {"tokens": tokens, "chunk_size": chunk} for chunk in chunk_sizes},
    )
    rows = []
    for chunk in chunk_sizes:
        got = measured[labels[chunk]]
        rows.append(
            {
                "chunk_size": "whole" if chunk is None else chunk,
                "peak_bytes": got["peak"],
                "loss": got["loss"],
                "logits_bytes": got["logits_bytes"],
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    print(json.dumps(_loss_child(json.loads(sys.argv[1]))))
