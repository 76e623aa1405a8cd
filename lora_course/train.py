"""A short training loop for LoRA fine-tuning, held-out evaluation and greedy generation.

``finetune`` is the whole of supervised fine-tuning: batches of ``[bos] prompt answer [eos]``
with the prompt masked out of the loss (``lora_course.data.tokenize_example``), AdamW on the
parameters that require gradients (the LoRA matrices A and B once ``add_lora`` or PEFT has
frozen the rest), one optimizer step per batch. It works the same for our ``add_lora``, for a
PEFT model and for a 4-bit base (bitsandbytes ``Linear4bit``, adapters in fp32: QLoRA).

A loss that turns non-finite (inf or NaN, e.g. after an overflow) stops training cleanly: the
history's last row has ``diverged=True`` instead of an exception. On the tiny Llama a far too
large LoRA scaling alpha/r rarely reaches inf, because every RMSNorm rescales the blown-up
activations; it shows instead as a loss that jumps up and stalls (measured: r=8, alpha=1024,
60 steps at lr 3e-3 ends near 1.1 with 0 % test accuracy, against 0.14 and 100 % at alpha=16).
"""

from __future__ import annotations

import math
import time

import torch

from lora_course.data import batches, collate, tokenize_example

__all__ = ["finetune", "evaluate", "generate"]


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _tokenized(tokenizer, dataset) -> list[dict]:
    if not dataset:
        raise ValueError("the dataset is empty: load it with lora_course.data.load_task('train')")
    return [tokenize_example(tokenizer, ex) for ex in dataset]


def finetune(
    model,
    tokenizer,
    dataset: list[dict],
    steps: int = 60,
    lr: float = 3e-3,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
):
    """Train the trainable parameters of ``model`` on ``dataset`` for ``steps`` batches.

    ``dataset`` is a list of ``{"prompt", "answer"}`` items (``load_task("train")``). Returns a
    pandas DataFrame with one row per step: ``step`` (1, 2, ...), ``loss`` (mean cross-entropy
    over the answer tokens of the batch), ``seconds`` (since the start) and ``diverged``
    (True on the row whose loss was inf or NaN; training stopped there). The model is left in
    eval mode.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            "the model has no trainable parameters: add adapters first, e.g. "
            "add_lora(model, 'all-linear', rank=8, alpha=16) or peft.get_peft_model(...)"
        )
    packed = [
        name
        for name, p in model.named_parameters()
        if getattr(getattr(p, "quant_state", None), "packing_format_for_cpu", False)
    ]
    if packed:
        raise ValueError(
            f"{len(packed)} 4-bit weights (e.g. {packed[0]}) were repacked by bitsandbytes for "
            "CPU inference, and gradients do not flow back through repacked layers. Load the "
            "model with lora_course.load_model(quantization=...), which prevents this, or set "
            "support_avx512bf16_for_cpu = False on its Linear4bit layers before evaluating it"
        )
    torch.manual_seed(seed)  # dropout inside the adapters
    data = batches(_tokenized(tokenizer, dataset), batch_size, tokenizer.pad_token_id, seed)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    device = _device(model)

    rows, start = [], time.perf_counter()
    model.train()
    bar = tqdm(range(1, steps + 1), desc="fine-tuning", disable=not progress)
    for step in bar:
        batch = {k: v.to(device) for k, v in next(data).items()}
        loss = model(**batch).loss  # cross-entropy on the answer tokens only
        diverged = not math.isfinite(loss.item())
        rows.append(
            {
                "step": step,
                "loss": loss.item(),
                "diverged": diverged,
                "seconds": time.perf_counter() - start,
            }
        )
        if diverged:  # a NaN would poison every later step: stop and say so
            break
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    return pd.DataFrame(rows, columns=["step", "loss", "diverged", "seconds"])


@torch.no_grad()
def evaluate(model, tokenizer, dataset: list[dict], batch_size: int = 64) -> float:
    """Fraction of items whose answer the model produces under greedy decoding, in [0, 1].

    Teacher forcing gives the same verdict as generating: greedy decoding writes the answer
    exactly when, at every answer position, the most likely next token is the answer's token.
    One forward pass per batch instead of one per generated token.
    """
    examples = _tokenized(tokenizer, dataset)
    device, correct = _device(model), 0
    was_training = model.training
    model.eval()
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start : start + batch_size], tokenizer.pad_token_id)
        logits = model(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
        ).logits  # (batch, seq, vocab)
        predicted = logits[:, :-1].argmax(-1).cpu()  # the token each position predicts next
        target = batch["labels"][:, 1:]
        # The answer's own tokens count, not the closing eos: "positive" is the answer.
        answer = (target != -100) & (target != tokenizer.eos_token_id)
        ok = ((predicted == target) | ~answer).all(dim=1)
        correct += int(ok.sum())
    model.train(was_training)
    return correct / len(examples)


@torch.no_grad()
def generate(model, tokenizer, prompts, max_new_tokens: int = 8) -> list[str]:
    """Greedy continuations of ``prompts`` (a string or a list), without the prompt itself.

    Deterministic: no sampling. Generation stops at the tokenizer's eos token.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"  # new tokens follow the prompt, padding goes in front
    try:
        enc = tokenizer(list(prompts), return_tensors="pt", padding=True).to(_device(model))
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    new = out[:, enc["input_ids"].shape[1] :]
    return [tokenizer.decode(row, skip_special_tokens=True) for row in new]
