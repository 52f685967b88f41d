"""Axolotl itself reads stage 1's files through the config: real `axolotl preprocess`
on CPU with the small model, offline, through styletune's prompt strategy. Its
token counts must equal ours; the tokens before the continuation must be the
request's own (the prompt tokenised alone, as a server does), and only the
continuation's tokens (plus the end-of-turn token) may carry labels."""
import sys
from pathlib import Path

import pytest
from conftest import FT, llama_like_model, run_axolotl
from styletune.config import load_config
from styletune.data.prepare import planned_outputs, prepare_data
from styletune.data.tokens import training_template
from styletune.fileio import write_outputs

pytestmark = pytest.mark.slow


SETUPS = {
    # the rehearsal config's: ChatML's tokens in the continuation layout
    "chatml-continuation": {},
    # Axolotl's own chatml: the writer's text in a user turn of its own
    "chatml": {"chat_template": "chatml", "chat_template_jinja": None},
    # the main config's: Llama 3's tokens in the continuation layout
    "llama3-like": {"chat_template": "jinja",
                    "chat_template_jinja": load_config(FT / "configs" / "qlora_style_transfer.yaml")
                    .data["chat_template_jinja"],
                    "special_tokens": {"pad_token": "<|im_end|>", "eos_token": "<|eot_id|>"},
                    # Axolotl insists, since the new token needs a trainable embedding
                    "lora_modules_to_save": ["embed_tokens", "lm_head"]},
}


@pytest.fixture(scope="module", params=list(SETUPS))
def preprocessed(request, tmp_path_factory):
    from conftest import write_config
    tmp = tmp_path_factory.mktemp("axo")
    overrides = dict(SETUPS[request.param])
    if request.param == "llama3-like":
        overrides["base_model"] = str(llama_like_model(tmp / "model"))
    cfg = load_config(write_config(tmp, **overrides))
    result = prepare_data(cfg)
    write_outputs(planned_outputs(result), force=False)
    axolotl = Path(sys.executable).with_name("axolotl")
    network_attempts = run_axolotl(cfg, tmp, lambda axo_cfg: [str(axolotl), "preprocess", str(axo_cfg)])
    from datasets import load_from_disk
    prepared = Path(cfg.data["dataset_prepared_path"])
    sets = [load_from_disk(str(d)) for d in sorted(prepared.iterdir()) if d.is_dir()]
    return cfg, result, sets, network_attempts


def test_axolotl_accepts_the_config_and_keeps_every_example(preprocessed):
    cfg, result, sets, _ = preprocessed
    sizes = sorted(len(s) for s in sets)
    assert sizes == sorted([len(result.train) + len(result.rows_without_end),
                            len(result.validation) + len(result.validation_openings)])
    # join drills and scene openings train beside the examples; a validation chunk's
    # opening is held out beside its example
    assert result.drills and result.openings and result.validation_openings


def test_our_token_counts_equal_axolotls(preprocessed):
    _, result, sets, _ = preprocessed
    theirs = sorted(len(row["input_ids"]) for s in sets for row in s)
    ours = sorted([e.total_tokens for e in result.examples]
                  + [d.total_tokens for d in result.rows_without_end + result.validation_openings])
    assert theirs == ours


def test_only_the_continuation_and_its_end_token_are_labelled_a_drill_without_it(preprocessed):
    cfg, result, sets, _ = preprocessed
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(cfg.base_model)
    end = cfg.data["special_tokens"]["eos_token"]
    tok.add_special_tokens({"additional_special_tokens": [end]})
    tok.chat_template = training_template(cfg)
    encode = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    requests = {}
    for e in result.examples:
        user = e.messages()[:1]
        request = encode(tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True))
        requests[tuple(request)] = encode(e.completion + end)
    goes_on = result.rows_without_end + result.validation_openings
    for d in goes_on:     # the writer's text goes on: no end of turn learnt
        request = encode(tok.apply_chat_template(d.messages()[:-1], tokenize=False, add_generation_prompt=True))
        requests[tuple(request)] = encode(d.continuation)
    ends = systems = 0
    for s in sets:
        for row in s:
            labelled = [t for t, lab in zip(row["input_ids"], row["labels"]) if lab != -100]
            start = row["labels"].index(labelled[0])
            # the request's tokens as a server makes them, then exactly the
            # continuation's own tokens and the end token, labelled
            assert requests[tuple(row["input_ids"][:start])] == labelled
            example = labelled[-1] == tok.convert_tokens_to_ids(end)
            ends += example
            assert all(lab == -100 for lab in row["labels"][:start])
            # the writer's text comes first: in a user turn, or opening the assistant's
            # (the continuation layout); no system block before an example's (a chat
            # drill's opens with the chat route's system message)
            opening = tok.decode(row["input_ids"])[:40]
            chat_drill = "system" in opening and not example
            assert chat_drill or ("system" not in opening and ("user" in opening or "assistant" in opening))
            systems += chat_drill
    assert ends == len(result.examples)        # one labelled end of turn per example, none per drill
    assert systems == sum(bool(d.system) for d in goes_on) > 0
    assert any(e.completion.startswith(" ") for e in result.examples)
    # typed examples: the prompt ends in the writer's space or paragraph break
    assert any(e.prefix.endswith((" ", "\n")) for e in result.examples)
    assert any(e.header for e in result.examples)


def test_no_tracker_or_hub_connection_attempted(preprocessed):
    network_attempts = preprocessed[3]
    assert network_attempts == "", "axolotl preprocess tried to reach the network:\n" + network_attempts


def test_a_row_longer_than_sequence_len_stops_axolotl_instead_of_vanishing(tmp_path):
    """Stage 1 refuses a row over sequence_len, but a sequence_len lowered after it ran
    (on stage 2's command line) would hand Axolotl one, and Axolotl's default drops it
    without a word: the main config's excess_length_strategy: raise (the rehearsal's by
    extends) makes preprocessing stop instead, naming the length."""
    from conftest import write_config
    cfg = load_config(write_config(tmp_path))
    assert cfg.data["excess_length_strategy"] == "raise"
    result = prepare_data(cfg)
    write_outputs(planned_outputs(result), force=False)
    longest = max(e.total_tokens for e in result.train)
    lowered = load_config(write_config(tmp_path, sequence_len=longest - 1))
    axolotl = Path(sys.executable).with_name("axolotl")
    said = run_axolotl(lowered, tmp_path, lambda axo_cfg: [str(axolotl), "preprocess", str(axo_cfg)],
                       succeed=False)
    assert f"Sequence encountered with {longest} tokens, which exceeds the maximum {longest - 1}" in said
