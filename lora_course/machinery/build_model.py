"""Rebuild ``data/tiny-llama`` from scratch: tokenizer, architecture, pretraining, model card.

``python -m lora_course build-model`` runs ``build_model()``. Everything is seeded and trains
on one thread, so the same machine and torch version rebuild the same weights.

1. A byte-level BPE tokenizer (the kind Llama 3 uses) trained with the ``tokenizers`` library
   on the generated corpus (``lora_course.data.corpus``); its vocabulary is large enough that
   every corpus word is one token.
2. A ``LlamaForCausalLM`` with the shape vocabulary of Llama 3.1: grouped-query attention
   (fewer key/value heads than query heads, so k_proj/v_proj are not square), SwiGLU MLP
   (gate/up/down_proj), RMSNorm, RoPE, untied input and output embeddings.
3. Next-token pretraining with AdamW and a cosine learning rate on packed blocks of text.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from lora_course import data
from lora_course.models import TINY_MODEL_DIR

__all__ = ["TINY_MODEL_DIR", "ARCHITECTURE", "QUICK", "build_tokenizer", "pretrain", "build_model"]

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"  # Llama 3's names, plus pad

ARCHITECTURE = dict(
    vocab_size=1024,  # BPE vocabulary: every word of the corpus becomes one token
    hidden_size=192,  # d_model
    intermediate_size=512,  # SwiGLU width (Llama 3.1-8B: 14336 for d_model 4096)
    num_hidden_layers=4,
    num_attention_heads=6,  # head_dim 32
    num_key_value_heads=2,  # grouped-query attention: 3 query heads share each k/v head
    max_position_embeddings=256,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,  # as in Llama 3.1-8B: lm_head is its own matrix
)
PRETRAIN = dict(n_docs=20000, steps=400, batch_size=16, block_size=128, lr=3e-3, seed=0)
QUICK = dict(
    architecture=dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
    ),
    pretrain=dict(n_docs=300, steps=10, batch_size=4, block_size=64),
)


def build_tokenizer(texts: list[str], vocab_size: int, model_max_length: int = 256):
    """A fast byte-level BPE tokenizer trained on ``texts`` that adds ``<|begin_of_text|>``.

    Returns a ``transformers`` fast tokenizer with bos, eos and pad tokens set.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="right",
        model_max_length=model_max_length,
    )


def _blocks(tokenizer, docs: list[str], block_size: int) -> torch.Tensor:
    """Concatenate ``[bos] doc [eos]`` for every doc and cut into (n_blocks, block_size)."""
    ids = []
    for enc in tokenizer(docs)["input_ids"]:
        ids += enc + [tokenizer.eos_token_id]
    n = len(ids) // block_size
    return torch.tensor(ids[: n * block_size]).view(n, block_size)


def pretrain(model, tokenizer, docs, steps, batch_size, block_size, lr, seed=0, progress=True):
    """Next-token pretraining: AdamW, 5 % warm-up, cosine decay to 10 % of ``lr``.

    Returns the loss of every step (a list of floats).
    """
    from tqdm.auto import tqdm

    blocks = _blocks(tokenizer, docs, block_size)  # (n_blocks, block_size)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, steps // 20)

    def schedule(step):  # multiplies lr
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    model.train()
    losses = []
    bar = tqdm(range(steps), desc="pretraining", disable=not progress)
    for _ in bar:
        batch = blocks[torch.randint(len(blocks), (batch_size,), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return losses


def _samples(model, tokenizer) -> list[tuple[str, str]]:
    from lora_course.train import generate

    prompts = ["the soup was", "the cake at the bistro tasted stale.", "we went to the"]
    return list(zip(prompts, generate(model, tokenizer, prompts, max_new_tokens=16), strict=True))


def _model_card(summary: dict) -> str:
    a, p, s = summary["architecture"], summary["pretrain"], summary
    head_dim = a["hidden_size"] // a["num_attention_heads"]
    kv_width = head_dim * a["num_key_value_heads"]
    samples = "\n".join(f"| `{q}` | `{a_}` |" for q, a_ in summary["samples"])
    return f"""# tiny-llama: the course's offline model

A small `LlamaForCausalLM` that every notebook of lora-course loads with no network, through the
same `AutoModelForCausalLM.from_pretrained(..., quantization_config=...)` path as the lesson's
Llama-3.1-8B. Built by `python -m lora_course build-model` (`lora_course/machinery/build_model.py`).

## Architecture
| field | value | note |
|---|---|---|
| parameters | {s["parameters"]:,} | untied: `embed_tokens` and `lm_head` are separate |
| vocab_size | {a["vocab_size"]} | byte-level BPE tokenizer trained on the corpus |
| hidden_size | {a["hidden_size"]} | |
| intermediate_size | {a["intermediate_size"]} | SwiGLU MLP: gate_proj, up_proj, down_proj |
| num_hidden_layers | {a["num_hidden_layers"]} | |
| num_attention_heads | {a["num_attention_heads"]} | head_dim {head_dim} |
| num_key_value_heads | {a["num_key_value_heads"]} | GQA: k/v_proj {a["hidden_size"]}->{kv_width} |
| max_position_embeddings | {a["max_position_embeddings"]} | RoPE, theta {a["rope_theta"]:g} |

Module names are Llama 3.1's: `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`,
`down_proj`, `lm_head`. Weights: fp32 safetensors.

## Corpus and training
- Corpus: {p["n_docs"]:,} short restaurant visits from `lora_course.data.corpus(seed={p["seed"]})`:
  dishes, places, prices and reviews in which an adjective is followed by a reaction of the
  same sentiment ("the soup was bland. i sent it back."). 40 positive, 40 negative adjectives.
- Pretraining: {p["steps"]:,} steps of AdamW (lr {p["lr"]:g}, 5 % warm-up, cosine decay),
  batches of {p["batch_size"]} x {p["block_size"]} tokens, seed {p["seed"]}, on the CPU in
  {s["seconds"]:.0f} s (one thread).
- Loss: {s["first_loss"]:.3f} at the first step, {s["final_loss"]:.3f} averaged over the last
  50 steps.

## Sample generations (greedy)
| prompt | continuation |
|---|---|
{samples}

## What it is for
The fine-tuning task in `data/finetune` (review -> sentiment) uses a format this model never
saw, so it fails it; a rank-8 LoRA teaches it in seconds. It is a teaching model: it knows
only its small grammar.

## Rebuild
`python -m lora_course build-model` (about {summary["seconds"] / 60:.0f} minutes on a 2-core CPU;
`--quick --output DIR` for a toy build). Seeds are fixed and training runs on one
thread, so the same torch version rebuilds the same weights.

## Licence
MIT, like the rest of lora-course: the corpus, tokenizer and weights are generated here.
"""


def build_model(
    output_dir: str | Path = TINY_MODEL_DIR, quick: bool = False, progress: bool = True
) -> dict:
    """Build the tokenizer and model, pretrain, and save both plus a model card in ``output_dir``.

    ``quick=True`` builds a toy model in seconds (for tests). Returns a summary dict
    (parameters, losses, seconds, samples).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    arch = {**ARCHITECTURE, **(QUICK["architecture"] if quick else {})}
    hp = {**PRETRAIN, **(QUICK["pretrain"] if quick else {})}
    start = time.perf_counter()
    docs = data.corpus(hp["n_docs"], seed=hp["seed"])
    # The task's own words go into the tokenizer only, so they are single tokens too.
    tokenizer = build_tokenizer(
        docs + [data.TASK_WORDS] * 20, arch["vocab_size"], arch["max_position_embeddings"]
    )
    arch["vocab_size"] = len(tokenizer)  # BPE stops when no pair is left to merge

    threads = torch.get_num_threads()
    # One thread: the same float sums in the same order on every run (a deterministic
    # build), and no slowdown from threads that wait on each other on a busy 2-core CPU.
    torch.set_num_threads(1)
    torch.manual_seed(hp["seed"])
    config = LlamaConfig(
        **arch,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    try:
        losses = pretrain(
            model,
            tokenizer,
            docs,
            hp["steps"],
            hp["batch_size"],
            hp["block_size"],
            hp["lr"],
            seed=hp["seed"],
            progress=progress,
        )
    finally:
        torch.set_num_threads(threads)
    summary = {
        "architecture": arch,
        "pretrain": hp,
        "parameters": sum(p.numel() for p in model.parameters()),
        "first_loss": losses[0],
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "losses": losses,
        "seconds": time.perf_counter() - start,
        "threads": 1,
        "samples": _samples(model, tokenizer),
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    (output_dir / "README.md").write_text(_model_card(summary))
    return summary
