"""The course's text: the pretraining corpus of the tiny model and the fine-tuning task.

**Corpus.** Short restaurant visits written from a small grammar: dishes, places, days, prices
and, above all, reviews in which an adjective is followed by a reaction that agrees with it
("the soup was bland. i sent it back."). Because the reaction comes *after* the adjective, the
model can only predict it if its hidden state at the adjective carries the adjective's
sentiment: pretraining forces it to learn that "bland" is bad without ever saying so.

**Task** (``data/finetune``). A format the model never saw: ``review: the soup was bland.
sentiment:`` -> `` negative``. The LoRA only has to route knowledge the model already has into
a new answer (a "style" change, which a small rank handles). Train and test use disjoint
adjectives, so held-out accuracy measures generalisation, not memory.

**Second task** (``data/finetune/stars``, notebook 08's second adapter). The same reviews in
another format, ``rate: the soup was bland. stars:`` -> `` one`` (`` five`` when good): the same
knowledge routed into other words, so two adapters on one base can be told apart.

**Held-out pretraining text.** ``held_out_corpus`` draws documents from another seed and drops
any the tiny model was pretrained on: the text to measure forgetting on.

**Tokenisation.** ``tokenize_example`` gives ``input_ids = [bos] prompt answer [eos]`` and
``labels`` equal to ``input_ids`` with the prompt replaced by -100, the index that PyTorch's
``cross_entropy`` (and so ``LlamaForCausalLM``) ignores: the loss is the answer's alone.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import torch

__all__ = [
    "FINETUNE_DIR",
    "STARS_DIR",
    "DISHES",
    "PLACES",
    "POSITIVE",
    "NEGATIVE",
    "corpus",
    "make_task",
    "write_task",
    "load_task",
    "make_stars_task",
    "write_stars_task",
    "HELD_OUT_FILE",
    "held_out_corpus",
    "write_held_out_corpus",
    "load_held_out_corpus",
    "tokenize_example",
    "collate",
    "batches",
]

FINETUNE_DIR = Path(__file__).resolve().parent.parent / "data" / "finetune"
STARS_DIR = FINETUNE_DIR / "stars"
HELD_OUT_FILE = FINETUNE_DIR / "held_out_corpus.txt"

DISHES = (
    "soup pizza pasta salad curry burger steak cake pie bread rice fish chicken taco omelette "
    "pancake dumpling risotto lasagna stew sushi ramen waffle sandwich chili porridge muffin "
    "cookie pudding kebab paella falafel quiche brownie bagel tart salmon lamb burrito pastry"
).split()
PLACES = "cafe diner bistro restaurant bakery canteen pub inn tavern kitchen".split()
DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
FRIENDS = "my sister|my brother|my friend|my mother|my father|my uncle|the waiter|the chef".split(
    "|"
)
# 40 adjectives each. The first 20 of each list are fine-tuning training adjectives, the last
# 20 are held out (see make_task); pretraining uses all 80.
POSITIVE = (
    "delicious wonderful excellent amazing tasty superb fantastic lovely perfect great "
    "brilliant fresh marvelous outstanding splendid heavenly divine yummy delightful terrific "
    "exquisite flavorful tender crisp juicy savory magnificent fabulous sublime impressive "
    "pleasant satisfying glorious charming flawless stellar incredible awesome scrumptious rich"
).split()
NEGATIVE = (
    "awful terrible horrible disgusting bland stale soggy burnt greasy salty dry cold "
    "tasteless gross nasty dreadful rotten mushy chewy overcooked undercooked rubbery sour "
    "bitter lousy mediocre inedible revolting vile foul watery lukewarm poor appalling "
    "atrocious rancid spoiled limp tough sad"
).split()
REACTIONS = {
    True: (
        "i loved it",
        "we will come back",
        "i would order it again",
        "i gave it five stars",
        "everyone was happy",
        "i finished every bite",
    ),
    False: (
        "i hated it",
        "we will never come back",
        "i sent it back",
        "i gave it one star",
        "everyone was upset",
        "i left most of it",
    ),
}
# The review sentence without its reaction: what a fine-tuning prompt quotes.
REVIEWS = (
    "the {dish} was {adj}.",
    "we had the {dish} at the {place}. it was {adj}.",
    "the {dish} at the {place} tasted {adj}.",
    "{friend} said the {dish} was {adj}.",
)
FILLERS = (
    "we went to the {place} on {day}.",
    "the {dish} costs {n} dollars.",
    "the {place} opens at {n} o'clock.",
    "{friend} ordered the {dish}.",
    "on {day} the {place} was full.",
    "the {place} has {n} tables.",
    # The task's label words, so a learner sees real words, not untrained tokens. They are
    # about places, never about an adjective: the base model learns no sentiment labels.
    "{friend} wrote a positive review of the {place}.",
    "{friend} wrote a negative review of the {place}.",
)
TASK_WORDS = "review: sentiment:"  # words only the task uses: the tokenizer still learns them


def _review(rng: random.Random, adjective: str) -> str:
    return rng.choice(REVIEWS).format(
        dish=rng.choice(DISHES), place=rng.choice(PLACES), adj=adjective, friend=rng.choice(FRIENDS)
    )


def _filler(rng: random.Random) -> str:
    return rng.choice(FILLERS).format(
        dish=rng.choice(DISHES),
        place=rng.choice(PLACES),
        day=rng.choice(DAYS),
        friend=rng.choice(FRIENDS),
        n=rng.randint(2, 12),
    )


def corpus(n_docs: int, seed: int = 0) -> list[str]:
    """``n_docs`` pretraining documents, each 2-5 sentences with at least one review.

    A review is ``REVIEWS`` + a reaction of the same sentiment, e.g. "the cake at the inn
    tasted stale. i left most of it." The same seed gives the same corpus.
    """
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        sentences = []
        for i in range(rng.randint(2, 5)):
            if i == 0 or rng.random() < 0.6:
                good = rng.random() < 0.5
                adjective = rng.choice(POSITIVE if good else NEGATIVE)
                sentences.append(f"{_review(rng, adjective)} {rng.choice(REACTIONS[good])}.")
            else:
                sentences.append(_filler(rng))
        docs.append(" ".join(sentences))
    return docs


def _labelled_task(
    template: str, labels: tuple[str, str], n_train: int, n_test: int, seed: int
) -> dict[str, list[dict]]:
    """Balanced items ``template.format(review=...)`` -> ``labels[0]`` (good) / ``labels[1]``
    (bad); train uses the first 20 adjectives of each list, test the last 20."""
    rng = random.Random(seed)
    split = {"train": (POSITIVE[:20], NEGATIVE[:20]), "test": (POSITIVE[20:], NEGATIVE[20:])}
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        positive, negative = split[name]
        items = []
        for i in range(n):
            good = i % 2 == 0
            adjective = rng.choice(positive if good else negative)
            items.append(
                {
                    "prompt": template.format(review=_review(rng, adjective)),
                    "answer": labels[0] if good else labels[1],
                    "adjective": adjective,
                }
            )
        rng.shuffle(items)
        out[name] = items
    return out


def _write_jsonl(task: dict[str, list[dict]], folder: str | Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, items in task.items():
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(item) + "\n" for item in items))
    return paths


def make_task(n_train: int = 200, n_test: int = 200, seed: int = 1) -> dict[str, list[dict]]:
    """The fine-tuning task: ``{"train": [...], "test": [...]}`` of ``{"prompt", "answer"}``.

    Training items use the first 20 positive and 20 negative adjectives, test items the other
    20 + 20, so no test adjective is ever seen in fine-tuning. Labels are balanced.
    """
    labels = (" positive", " negative")
    return _labelled_task("review: {review} sentiment:", labels, n_train, n_test, seed)


def write_task(folder: str | Path = FINETUNE_DIR, **kwargs) -> dict[str, Path]:
    """Write ``make_task(**kwargs)`` as ``train.jsonl`` and ``test.jsonl`` in ``folder``."""
    return _write_jsonl(make_task(**kwargs), folder)


def make_stars_task(n_train: int = 200, n_test: int = 200, seed: int = 2) -> dict[str, list[dict]]:
    """The second task: ``{"train": [...], "test": [...]}`` of ``{"prompt", "answer"}`` with
    ``rate: <review> stars:`` -> `` five`` (good) or `` one`` (bad).

    The same adjective split as ``make_task`` and balanced labels; another seed, so the reviews
    differ from the sentiment task's.
    """
    return _labelled_task("rate: {review} stars:", (" five", " one"), n_train, n_test, seed)


def write_stars_task(folder: str | Path = STARS_DIR, **kwargs) -> dict[str, Path]:
    """Write ``make_stars_task(**kwargs)`` as ``train.jsonl`` and ``test.jsonl`` in ``folder``;
    ``load_task(split, STARS_DIR)`` reads them back."""
    return _write_jsonl(make_stars_task(**kwargs), folder)


def held_out_corpus(
    n_docs: int, seed: int = 1, pretraining_docs: int = 20000, pretraining_seed: int = 0
) -> list[str]:
    """``n_docs`` corpus documents the tiny model never saw: drawn with ``seed`` and kept only
    if absent from ``corpus(pretraining_docs, pretraining_seed)``, the pretraining text
    (``build_model.PRETRAIN``; a test checks the defaults match it)."""
    if seed == pretraining_seed:
        raise ValueError(f"seed must differ from pretraining_seed={pretraining_seed}, got {seed}")
    seen = set(corpus(pretraining_docs, seed=pretraining_seed))
    fresh = [doc for doc in corpus(4 * n_docs, seed=seed) if doc not in seen]
    if len(fresh) < n_docs:
        raise ValueError(f"only {len(fresh)} unseen documents; ask for fewer than {n_docs}")
    return fresh[:n_docs]


def write_held_out_corpus(path: str | Path = HELD_OUT_FILE, n_docs: int = 64) -> Path:
    """Write ``held_out_corpus(n_docs)`` one document per line (generating the pretraining
    corpus to exclude takes seconds; a notebook reads the file instead)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(doc + "\n" for doc in held_out_corpus(n_docs)))
    return path


def load_held_out_corpus(path: str | Path = HELD_OUT_FILE) -> list[str]:
    """The held-out pretraining documents written by ``write_held_out_corpus``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; restore it with `git checkout -- data/finetune` or rewrite it "
            "with `python -c 'from lora_course.data import write_held_out_corpus as w; w()'`"
        )
    return [line for line in path.read_text().splitlines() if line.strip()]


def load_task(split: str = "train", folder: str | Path = FINETUNE_DIR) -> list[dict]:
    """The ``"train"`` or ``"test"`` items of the task, each ``{"prompt", "answer", ...}``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path = Path(folder) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; restore it with `git checkout -- data/finetune` or rewrite it "
            "with `python -c 'from lora_course.data import write_task; write_task()'`"
        )
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tokenize_example(tokenizer, example: dict) -> dict[str, list[int]]:
    """``input_ids`` = [bos] prompt answer [eos]; ``labels`` = -100 on [bos] and the prompt.

    The prompt and the answer are tokenised separately so the boundary is exact; the answer
    starts with a space (" positive"), as it would inside running text.
    """
    prompt = tokenizer(example["prompt"], add_special_tokens=False)["input_ids"]
    answer = tokenizer(example["answer"], add_special_tokens=False)["input_ids"]
    prefix = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    suffix = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    input_ids = prefix + prompt + answer + suffix
    labels = [-100] * (len(prefix) + len(prompt)) + answer + suffix
    return {"input_ids": input_ids, "labels": labels}


def collate(examples: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad tokenised examples into tensors of shape (batch, longest).

    Padding gets ``attention_mask`` 0 and label -100, so it changes neither the other
    positions (the attention is causal) nor the loss.
    """
    longest = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), longest), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), longest), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), longest), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batches(
    examples: list[dict], batch_size: int, pad_token_id: int, seed: int = 0
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless shuffled batches: each pass (epoch) visits every example once, in a new order."""
    if not examples:
        raise ValueError("the dataset is empty: load it with load_task('train')")
    rng = random.Random(seed)
    order = list(range(len(examples)))
    size = min(batch_size, len(order))  # a tiny dataset gives one full-size batch per epoch
    while True:
        rng.shuffle(order)
        for start in range(0, len(order) - size + 1, size):  # the ragged last batch is dropped
            yield collate([examples[j] for j in order[start : start + size]], pad_token_id)
