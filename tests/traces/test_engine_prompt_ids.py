"""Token ids of prompts on the real Gemma 3 270M: texts as before, conversations through the
checkpoint's chat template (``traces.engine.prompt_ids``, ``traces.engine.chat_template``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import PreTrainedTokenizerFast

from traces.chat_messages import ChatMessages
from traces.engine.chat_template import GEMMA3_CHAT_TEMPLATE, ChatTemplateError
from traces.engine.model import LoadedModel
from traces.engine.prompt_ids import checkpoint_chat_template, prompt_token_ids

BOS, START, END, NEWLINE, USER, MODEL = 2, 105, 106, 107, 2364, 4368
CHATS: list[ChatMessages] = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "  Capital of France?  "},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
    ],
    [
        {"role": "user", "content": "Hi"},
        {"role": "model", "content": "Hello! How can I help?\n\n- ask\n- answer"},
        {"role": "user", "content": "Bye"},
    ],
]


def test_a_conversation_starts_with_one_bos_and_marks_its_turns(gemma: LoadedModel) -> None:
    text, chat = prompt_token_ids(gemma, ["Hello world", CHATS[1]])
    assert text == [BOS, 9259, 1902]  # a text: as before
    assert chat[:4] == [BOS, START, USER, NEWLINE]
    assert chat.count(BOS) == 1
    assert chat.count(START) == 4 and chat.count(END) == 3  # 3 turns, then the model's prompt
    assert chat[-3:] == [START, MODEL, NEWLINE]  # ready for the model's answer
    decoded = gemma.tokenizer.decode(chat, skip_special_tokens=False)
    assert "<start_of_turn>user\nAnswer in one word.\n\nCapital of France?<end_of_turn>" in decoded
    assert "<start_of_turn>model\nParis.<end_of_turn>" in decoded  # "assistant" is "model"


def test_the_ids_are_those_of_transformers_apply_chat_template(gemma: LoadedModel) -> None:
    # transformers' own rendering, on a tokenizer built from the same tokenizer.json.
    reference = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # unannotated
        tokenizer_object=gemma.tokenizer, bos_token="<bos>", eos_token="<eos>"
    )
    ours = prompt_token_ids(gemma, CHATS)
    for messages, ids in zip(CHATS, ours, strict=True):
        theirs = reference.apply_chat_template(
            messages, chat_template=GEMMA3_CHAT_TEMPLATE, add_generation_prompt=True
        )
        assert ids == list(theirs)


def test_the_default_model_uses_gemma_3s_own_template_verbatim(gemma: LoadedModel) -> None:
    # The package's GGUF carries no tokenizer.chat_template, so Gemma 3's own is used: the
    # "chat_template" of google/gemma-3-270m's tokenizer_config.json, pinned by its sha256.
    assert checkpoint_chat_template(gemma) == GEMMA3_CHAT_TEMPLATE
    digest = hashlib.sha256(GEMMA3_CHAT_TEMPLATE.encode()).hexdigest()
    assert digest == "7de1c58e208eda46e9c7f86397df37ec49883aeece39fb961e0a6b24088dd3c4"


def _checkpoint_in(gemma: LoadedModel, folder: Path) -> LoadedModel:
    """The real model and tokenizer, as if loaded from ``folder``."""
    return dataclasses.replace(
        gemma, name=str(folder), model=SimpleNamespace(name_or_path=str(folder))
    )


def test_a_checkpoint_folders_own_template_is_used(gemma: LoadedModel, tmp_path: Path) -> None:
    plain = "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    configured, jinja = tmp_path / "configured", tmp_path / "jinja"
    for folder in (configured, jinja):
        folder.mkdir()
        (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": plain}))
    (jinja / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}")

    assert checkpoint_chat_template(_checkpoint_in(gemma, configured)) == plain
    [ids] = prompt_token_ids(_checkpoint_in(gemma, configured), [CHATS[0]])
    assert ids[0] == BOS and ids.count(BOS) == 1
    assert gemma.tokenizer.decode(ids[1:]) == "[user]What is the capital of France?"
    # chat_template.jinja comes first; a template that writes no BOS still gets one.
    [ids] = prompt_token_ids(_checkpoint_in(gemma, jinja), [CHATS[0]])
    assert ids[0] == BOS and gemma.tokenizer.decode(ids[1:]) == "What is the capital of France?"


def test_a_conversation_the_template_refuses_is_an_error(gemma: LoadedModel) -> None:
    two_users: ChatMessages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        prompt_token_ids(gemma, [two_users])
