"""Row 5: fine-tuning the tiny model three ways: full, LoRA (r=8, all linear), QLoRA (nf4 base).

Each variant runs in its own process, so its peak resident set size (``ru_maxrss``) is its own;
the variants alternate (full, LoRA, QLoRA, full, ...) and the median of the repetitions is
kept. Reported as ratios to full fine-tuning: seconds per step, trainable parameters, peak RSS.
On a 1.9 M-parameter model the RSS is mostly the Python and torch runtime, so the memory ratio
is close to 1 here; the trainable-parameter ratio is what grows into gigabytes on a real model.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

VARIANTS = ("full", "lora", "qlora")


def _worker(variant: str, steps: int) -> dict:
    import resource
    import time

    import torch

    from lora_course import add_lora, count_parameters, load_model, load_task
    from lora_course.data import batches, tokenize_example

    torch.manual_seed(0)
    model, tokenizer = load_model(quantization="nf4" if variant == "qlora" else None)
    if variant != "full":
        add_lora(model, "all-linear", rank=8, alpha=16)
    trainable, _ = count_parameters(model)
    examples = [tokenize_example(tokenizer, ex) for ex in load_task("train")]
    data = batches(examples, 16, tokenizer.pad_token_id, seed=0)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    model.train()
    times = []
    for _ in range(steps + 2):  # the first two steps warm up the allocator and kernels
        batch = next(data)
        start = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"step_s": statistics.median(times[2:]), "trainable": trainable, "rss_mb": rss_mb}


def _run(variant: str, steps: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, variant, str(steps)], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rows(steps: int = 20, repeats: int = 3) -> list[dict]:
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(repeats):
        for variant in VARIANTS:
            runs[variant].append(_run(variant, steps))
    med = {
        v: {k: statistics.median(r[k] for r in rs) for k in ("step_s", "trainable", "rss_mb")}
        for v, rs in runs.items()
    }
    full = med["full"]
    out = []
    for variant in ("lora", "qlora"):
        m = med[variant]
        name = "LoRA" if variant == "lora" else "QLoRA (nf4)"
        for key, label, unit in (
            ("step_s", "seconds per step", "s"),
            ("trainable", "trainable parameters", ""),
            ("rss_mb", "peak RSS", "MB"),
        ):
            if key == "step_s":
                detail = f"{m[key] * 1e3:.1f} ms vs {full[key] * 1e3:.1f} ms"
            else:
                unit = f" {unit}" if unit else ""
                detail = f"{m[key]:,.0f}{unit} vs {full[key]:,.0f}{unit}"
            out.append(
                {
                    "row": 5,
                    "what": f"tiny-model fine-tuning, {label}: {name} / full",
                    "value": m[key] / full[key],
                    "target": "none",
                    "met": None,
                    "detail": detail,
                }
            )
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    print(json.dumps(_worker(sys.argv[1], int(sys.argv[2]))))
