"""LoRA fine-tuning past one device: data parallel (DDP) on Hugging Face Accelerate.

``python -m lora_course finetune`` trains the tiny Llama (or ``$LORA_COURSE_MODEL``) with
``add_lora`` on the task in ``data/finetune`` and prints the held-out accuracy. Started by
``accelerate launch``, the same code runs in N processes. Each process holds a whole copy of
the model and takes 1/N of every batch; after ``backward`` DDP averages the gradients over the
processes (an all-reduce), so every copy takes the same optimizer step. Accelerate picks the
transport: gloo between CPU processes, NCCL between GPUs. We write no distributed code of our
own: ``Accelerator.prepare`` wraps the model in DDP and shards the data loader,
``accelerator.backward`` runs the backward pass, ``gather`` collects the evaluation.

``batch_size`` is the global batch (``split_batches=True``): with 16 and 2 processes each takes
8 of the same 16 examples a single process would take at that step. Every answer is one token
plus eos, so both halves carry equally many loss tokens, the mean of the two halves' gradients
is the whole batch's gradient, and N processes follow the same training run as one, up to the
order of floating-point sums.

Commands (``accelerate launch --help`` lists the rest)::

    python -m lora_course finetune                                           # 1 process
    accelerate launch --multi_gpu --num_processes 2 -m lora_course finetune  # 2 processes

``--multi_gpu`` starts the processes with torchrun; on a machine without a GPU this command
runs them on the CPU over gloo, on a machine with N GPUs ``--num_processes N`` puts one on each
(not yet run on GPUs). Each process loads its own whole copy of the model on its own device:
``load_model(..., device="cuda:i")`` with i the process's local rank, which places it with
``device_map={"": i}``, never ``device_map="auto"`` across every GPU (a model split over
devices is one copy, which DDP cannot replicate). ``--model-name`` takes a hub id or a local
folder, e.g. a shape-true one (``lora_course.machinery.shape_true``), tested with two CPU processes.
``accelerate launch --cpu --num_processes 2`` does NOT start two processes: its CPU launcher
starts N processes only through mpirun (``--mpirun_hostfile``), otherwise one.
"""

from __future__ import annotations

import os
import time

import torch

from lora_course.data import collate, load_task, tokenize_example
from lora_course.lora import add_lora
from lora_course.models import load_model
from lora_course.train import evaluate

__all__ = ["finetune_data_parallel"]


def _check_launch() -> None:
    """Refuse ``accelerate launch --cpu --num_processes N``, which silently runs one process."""
    cpu_launcher = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    if cpu_launcher and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ:
        raise RuntimeError(
            "accelerate launch --cpu --num_processes N started one process, not N: its CPU "
            "launcher needs mpirun for more. Use `accelerate launch --multi_gpu --num_processes "
            "N -m lora_course finetune`, which runs the N processes on the CPU (gloo) when there "
            "is no GPU"
        )


def _loader(tokenizer, items: list[dict], batch_size: int, seed: int):
    """A shuffled DataLoader of tokenised items; each batch also carries the items' indices."""
    from torch.utils.data import DataLoader

    examples = [tokenize_example(tokenizer, item) | {"index": i} for i, item in enumerate(items)]

    def collate_with_index(batch: list[dict]) -> dict[str, torch.Tensor]:
        out = collate(batch, tokenizer.pad_token_id)
        out["index"] = torch.tensor([e["index"] for e in batch])  # which items, for the report
        return out

    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        examples,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,  # as lora_course.data.batches: the ragged last batch is dropped
        collate_fn=collate_with_index,
        generator=generator,
    )


def finetune_data_parallel(
    model_name: str | None = None,
    steps: int = 60,
    lr: float = 3e-3,
    batch_size: int = 16,
    rank: int = 8,
    alpha: float = 16,
    seed: int = 0,
    cpu: bool | None = None,
) -> dict:
    """LoRA fine-tuning of ``model_name`` (default: the tiny Llama) in every launched process.

    Trains ``add_lora(model, "all-linear", rank, alpha)`` for ``steps`` optimizer steps of
    global batch ``batch_size`` (AdamW, ``lr``), then evaluates on ``load_task("test")``, each
    process on its share of the items. ``cpu``: train on the CPU; default when torch sees no
    GPU. Returns, identical in every process::

        accuracy             held-out accuracy over all test items, in [0, 1]
        test_items           how many test items were evaluated (all of them, once)
        processes            N, the number of processes
        backend              the process group's transport ("gloo", "nccl"; None for one)
        steps, final_loss    optimizer steps taken and the last step's mean loss
        items_per_process    training items each process took over all steps (a list of N)
        overlap              items taken by more than one process at the same step (0: the
                             processes split every batch)
        seconds              wall time of the training loop (this process's clock)
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    _check_launch()
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available() if cpu is None else cpu,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
    n = accelerator.num_processes
    if batch_size % n:
        raise ValueError(
            f"batch_size must be a multiple of the number of processes ({n}), got {batch_size}"
        )

    torch.manual_seed(seed)  # the same adapter initialisation in every process
    device = accelerator.device  # "cpu" in every CPU process, "cuda:i" in GPU process i
    # a whole copy per process, on this process's own device (device_map={"": local_rank})
    where = "cpu" if device.type == "cpu" else f"cuda:{accelerator.local_process_index}"
    model, tokenizer = load_model(model_name, device=where)
    add_lora(model, "all-linear", rank=rank, alpha=alpha)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    loader = _loader(tokenizer, load_task("train"), batch_size, seed)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    seen, step, epoch, loss = [], 0, 0, None
    start = time.perf_counter()
    model.train()
    while step < steps:
        loader.set_epoch(epoch)  # a new shuffle each pass, the same in every process
        for batch in loader:
            seen.append(batch.pop("index"))
            loss = model(**batch).loss  # mean cross-entropy over this process's answer tokens
            accelerator.backward(loss)  # DDP averages the gradients over the processes here
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step == steps:
                break
        epoch += 1
    seconds = time.perf_counter() - start

    model = accelerator.unwrap_model(model)
    test = load_task("test")
    with accelerator.split_between_processes(test) as share:
        correct = round(evaluate(model, tokenizer, share) * len(share))
        counts = torch.tensor([[correct, len(share)]], device=accelerator.device)
    correct, evaluated = accelerator.gather(counts).sum(dim=0).tolist()

    taken = accelerator.gather(torch.stack(seen).unsqueeze(0))  # (processes, steps, batch / N)
    per_step = taken.transpose(0, 1).reshape(steps, -1)  # (steps, batch)
    overlap = sum(row.numel() - row.unique().numel() for row in per_step)
    final_loss = accelerator.reduce(loss.detach().reshape(1), reduction="mean").item()
    accelerator.end_training()
    return {
        "accuracy": correct / evaluated,
        "test_items": evaluated,
        "processes": n,
        "backend": accelerator.state.backend if n > 1 else None,
        "steps": steps,
        "final_loss": final_loss,
        "items_per_process": [int(row.numel()) for row in taken],
        "overlap": int(overlap),
        "seconds": seconds,
    }
