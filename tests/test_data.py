"""The corpus and the fine-tuning task: determinism, disjoint splits, masking, batching."""

import pytest
import torch

from lora_course import data


class WordTokenizer:
    """A stand-in tokenizer: one id per whitespace word, so tests need no model files."""

    bos_token_id, eos_token_id, pad_token_id = 0, 1, 2

    def __init__(self):
        self.vocab = {}

    def __call__(self, text, add_special_tokens=True):
        ids = [self.vocab.setdefault(w, 3 + len(self.vocab)) for w in text.split()]
        return {"input_ids": ([0] if add_special_tokens else []) + ids}


def test_corpus_is_deterministic_and_depends_on_the_seed():
    assert data.corpus(20, seed=0) == data.corpus(20, seed=0)
    assert data.corpus(20, seed=0) != data.corpus(20, seed=1)


def test_every_corpus_review_is_followed_by_a_reaction_of_its_sentiment():
    for doc in data.corpus(200):
        words = doc.replace(".", " . ").replace(",", " ").split()
        for i, w in enumerate(words):
            if w in data.POSITIVE or w in data.NEGATIVE:
                rest = " ".join(words[i + 2 : i + 8])  # the sentence after the adjective's
                reactions = data.REACTIONS[w in data.POSITIVE]
                assert any(rest.startswith(r) for r in reactions), (w, rest)


def test_adjectives_are_distinct_and_balanced():
    assert len(data.POSITIVE) == len(data.NEGATIVE) == 40
    assert not set(data.POSITIVE) & set(data.NEGATIVE)


def test_task_splits_use_disjoint_adjectives_and_balanced_labels():
    task = data.make_task()
    train_adj = {item["adjective"] for item in task["train"]}
    test_adj = {item["adjective"] for item in task["test"]}
    assert not train_adj & test_adj  # held-out accuracy is about adjectives never fine-tuned on
    assert not {i["prompt"] for i in task["train"]} & {i["prompt"] for i in task["test"]}
    for items in task.values():
        answers = [item["answer"] for item in items]
        assert answers.count(" positive") == answers.count(" negative")
        for item in items:
            assert item["prompt"].startswith("review: ") and item["prompt"].endswith(" sentiment:")
            good = item["adjective"] in data.POSITIVE
            assert item["answer"] == (" positive" if good else " negative")


def test_the_shipped_task_files_are_what_make_task_writes(tmp_path):
    data.write_task(tmp_path)
    for split in ("train", "test"):
        shipped = (data.FINETUNE_DIR / f"{split}.jsonl").read_text()
        assert shipped == (tmp_path / f"{split}.jsonl").read_text()
        assert data.load_task(split) == data.load_task(split, tmp_path)


def test_load_task_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="'train' or 'test'"):
        data.load_task("validation")
    with pytest.raises(FileNotFoundError, match="write_task"):
        data.load_task("train", tmp_path)


def test_tokenize_example_masks_the_prompt():
    tok = WordTokenizer()
    out = data.tokenize_example(tok, {"prompt": "review: it was bad. sentiment:", "answer": " no"})
    n_prompt = 1 + 5  # bos + five words
    assert len(out["input_ids"]) == len(out["labels"]) == n_prompt + 2  # + answer + eos
    assert out["labels"][:n_prompt] == [-100] * n_prompt
    assert out["labels"][n_prompt:] == out["input_ids"][n_prompt:]
    assert out["input_ids"][0] == tok.bos_token_id and out["labels"][-1] == tok.eos_token_id


def test_collate_pads_right_with_masked_labels():
    examples = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [5], "labels": [5]}]
    batch = data.collate(examples, pad_token_id=2)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 2, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [5, -100, -100]]
    assert batch["input_ids"].dtype == torch.long


def test_batches_visit_every_example_once_per_epoch():
    examples = [{"input_ids": [i], "labels": [i]} for i in range(12)]
    stream = data.batches(examples, batch_size=4, pad_token_id=0, seed=3)
    epoch = torch.cat([next(stream)["input_ids"].flatten() for _ in range(3)])
    assert sorted(epoch.tolist()) == list(range(12))
    again = data.batches(examples, batch_size=4, pad_token_id=0, seed=3)
    assert torch.equal(next(again)["input_ids"], epoch[:4].view(4, 1))
    with pytest.raises(ValueError, match="empty"):
        next(data.batches([], batch_size=4, pad_token_id=0))
