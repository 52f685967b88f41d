"""The second exact path: Meta's tokenizer.model (tiktoken BPE) for Llama 3.

Meta's file cannot ship here, so the test writes a small BPE file in the same
format; what is checked is our handling: the Llama 3 special-token layout,
the template's special tokens counted as one token each, and the text between
them counted as ordinary text."""
import base64
import re

from styletune.data.tokens import TiktokenCounter, axolotl_template

SPECIALS = re.compile(r"<\|[a-z_0-9]+\|>")


def write_bpe(path):
    tokens = [bytes([i]) for i in range(256)] + [b"th", b"he", b"the", b" the", b"in", b"ing", b"ed"]
    path.write_text("".join(f"{base64.b64encode(t).decode()} {rank}\n" for rank, t in enumerate(tokens)))
    return len(tokens)


def test_llama3_layout_and_exact_counts(tmp_path):
    n = write_bpe(tmp_path / "tokenizer.model")
    counter = TiktokenCounter(tmp_path / "tokenizer.model", axolotl_template("llama3"))
    enc = counter.enc
    # Llama 3 puts <|begin_of_text|> at 128000 and <|eot_id|> at 128009: base + 0 and + 9
    assert enc.encode("<|begin_of_text|>", allowed_special="all") == [n]
    assert enc.encode("<|eot_id|>", allowed_special="all") == [n + 9]
    assert enc.n_vocab == n + 256

    messages = [{"role": "user", "content": "Haji and Alan walked along the street."},
                {"role": "assistant", "content": "The night was breathing; nothing answered."}]
    rendered = counter.render(messages)
    assert rendered.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n")
    assert "system" not in rendered
    specials = SPECIALS.findall(rendered)
    assert len(specials) == 7
    plain = [piece for piece in SPECIALS.split(rendered) if piece]
    expected = len(specials) + sum(counter.count_texts(plain))
    assert counter.count_rendered([rendered]) == [expected]
    assert counter.count_texts(["the thing"]) == [len(enc.encode_ordinary("the thing"))]
