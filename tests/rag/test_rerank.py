"""The optional reranking stage, with a real (tiny, randomly initialised, made here)
cross-encoder: the candidates come back in the order of its scores."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest

from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings
from localsuite.rag.query import Answerer, Question
from localsuite.rag.rerank import CrossEncoderReranker, load_reranker
from localsuite.rag.store import Hit
from localsuite.rag.tokens import ModelTokenizer, TokenizerSource, load_counter


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the embedding extra's (scripts/install.sh installs them and the bundled model)
    transformers = importlib.import_module("transformers")
    torch = importlib.import_module("torch")
    settings = Settings(_env_file=None)
    counter = load_counter(TokenizerSource(None, None, True, settings.embedding_cache))
    assert isinstance(counter, ModelTokenizer), "the bundled model (its tokenizer) is missing"
    bundled = next(settings.embedding_cache.glob("all-MiniLM-L6-v2-*"))
    folder = tmp_path_factory.mktemp("cross-encoder")
    torch.manual_seed(7)
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=1, max_position_embeddings=512,
    )  # fmt: skip
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(bundled / name, folder / name)
    return folder


def test_candidates_come_back_in_the_cross_encoders_order(tiny_cross_encoder: Path) -> None:
    reranker = load_reranker(tiny_cross_encoder)
    assert isinstance(reranker, CrossEncoderReranker)
    passages = [f"passage number {i} about {word}" for i, word in enumerate("abcdef")]
    scores = reranker.scores("which passage?", passages)
    assert len(scores) == 6 and len(set(scores)) == 6  # one distinct score each

    answerer = Answerer(Settings(_env_file=None), None, None, None, None, None, None, reranker)  # type: ignore[arg-type]
    hits = [Hit(f"id{i}", 1.0 / (i + 1), {"text": p}) for i, p in enumerate(passages)]
    reranked = answerer._rerank(Question("which passage?", "docs", 3), hits)
    expected = sorted(range(6), key=lambda i: -scores[i])[:3]
    assert [h.id for h in reranked] == [f"id{i}" for i in expected]
    assert [h.score for h in reranked] == pytest.approx([scores[i] for i in expected])


def test_no_model_no_reranking_and_a_missing_one_is_a_config_error(tmp_path: Path) -> None:
    assert load_reranker(None) is None
    with pytest.raises(ConfigError, match="no such model folder"):
        load_reranker(tmp_path / "absent")
