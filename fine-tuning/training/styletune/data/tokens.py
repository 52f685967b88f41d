"""Exact token counts: each example rendered with the chat template the config
names and tokenised with the base model's tokenizer, as Axolotl will see it.

Two exact paths: the Hugging Face tokenizer of `base_model` (a local folder or
the Hugging Face cache), or Meta's `original/tokenizer.model` for Llama 3 read
with tiktoken. An estimate (4 characters a token) only when the config opts in,
and then every figure is labelled "approximate".
"""
import importlib.util
import json
from datetime import datetime
from pathlib import Path

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from styletune.config import Reads
from styletune.errors import ConfigError

# Stage 0's and stage 1's token counts read these (the model's tokenizer and template).
READS = Reads(axolotl=("base_model", "sequence_len", "chat_template", "chat_template_jinja",
                       "special_tokens", "tokens"),
              pipeline=("tiktoken_bpe", "allow_approximate_tokens"))

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_NAMED_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                         "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
                         "<|reserved_special_token_2|>", "<|start_header_id|>",
                         "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
LLAMA3_SPECIAL_COUNT = 256
LLAMA3_TEMPLATE_TOKENS = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                          "pad_token": "<|finetune_right_pad_id|>"}
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "pad_token", "unk_token")


class TokenizerFileError(ValueError):
    """A tokenizer.json the `tokenizers` library cannot read."""


def _tokenizer_unavailable() -> tuple:
    """What loading a tokenizer raises when it cannot be had, as opposed to a bug:
    OSError for a missing file or folder and every Hub refusal (GatedRepoError,
    RepositoryNotFoundError, RevisionNotFoundError are HTTP errors that are OSErrors;
    LocalEntryNotFoundError when offline and not cached; OfflineModeIsEnabled);
    HFValidationError for a name that cannot be a repo id; and an unreadable
    tokenizer file. Anything else is a bug and must show as one."""
    from huggingface_hub.errors import HFValidationError
    return (OSError, HFValidationError, json.JSONDecodeError, UnicodeDecodeError, TokenizerFileError)


def _raise_template_error(message):
    raise TemplateError(message)


def template_environment() -> ImmutableSandboxedEnvironment:
    """The same Jinja settings and helpers transformers gives chat templates."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_template_error
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def opens_assistant_turn(template_source: str) -> bool:
    """Whether the template renders a lone user message as the start of the
    assistant's turn (the continuation layout): its rendering, with the generation
    prompt asked for, ends with the message's own text."""
    probe = "\u2063probe"
    try:
        rendered = template_environment().from_string(template_source).render(
            messages=[{"role": "user", "content": probe}], add_generation_prompt=True,
            bos_token="", eos_token="")
    except TemplateError:
        return False
    return rendered.endswith(probe)


def turn_texts(render, conversation, end_token: str, ends_turn: bool = True) -> tuple[str, str, str]:
    """A conversation as the three texts training tokenises one after the other:
    the prompt (everything before the continuation, as a server renders a request:
    `render(conversation[:-1], add_generation_prompt=True)`), the continuation up to
    and including the end-of-turn token (the only part with loss), and whatever the
    template writes after it. Tokenised apart, the prompt's last token is the one a
    server gives the model, even where the writer's typed space or paragraph break
    would fuse with the continuation's first word in one string ("said, " + "Ladies").
    `render(messages, add_generation_prompt)` is the chat template. A join drill's
    continuation (`ends_turn` False: the writer's text goes on past it) stops at its
    own last character, with neither the end token nor what follows."""
    prompt = render(conversation[:-1], True)
    whole = render(conversation, False)
    if not whole.startswith(prompt):
        raise ConfigError("the chat template renders the writer's text differently once a "
                          "continuation follows it, so a request would not be the training "
                          "prompt: choose a chat_template whose generation prompt is what it "
                          "writes before an assistant turn")
    rest = whole[len(prompt):]
    content = conversation[-1]["content"]
    # the end token after the continuation's own text (a book may quote the token's name)
    after = len(content) if isinstance(content, str) and rest.startswith(content) else 0
    if not ends_turn:
        if not after:
            raise ConfigError("the chat template writes something before the continuation's "
                              "own text, so a join drill cannot stop where that text does: set "
                              "style_pipeline.join_drills_per_chunk to 0, or use a template that "
                              "opens the assistant turn with the writer's text")
        return prompt, rest[:after], ""
    end = rest.find(end_token, after) if end_token else -1
    if end < 0:
        raise ConfigError(f"the chat template writes no end-of-turn token ({end_token!r}) after the "
                          "continuation: set special_tokens.eos_token in the config to the token "
                          "the template ends a turn with")
    end += len(end_token)
    return prompt, rest[:end], rest[end:]


IGNORE_INDEX = -100  # the label transformers leaves out of the loss


def tokenizer_turn_texts(tokenizer, conversation, ends_turn: bool = True) -> tuple[str, str, str]:
    """turn_texts with a transformers tokenizer's chat template and end token."""
    def render(messages, generation):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    return turn_texts(render, conversation, tokenizer.eos_token, ends_turn)


def ends_turn(row: dict) -> bool:
    """Whether a stage 1 row's continuation ends the turn (a join drill's does not)."""
    return row.get("ends_turn") is not False


def training_ids(tokenizer, conversation, ends_turn: bool = True) -> dict:
    """input_ids, labels and attention_mask of one conversation as training tokenises
    it (Axolotl through train/turns.py; stage 4 scores the same tokens): the
    tokenizer's chat template rendered, its three turn_texts tokenised each on its
    own, the template writing every special token itself (no BOS added). Labels
    only on the continuation and its end-of-turn token (a join drill's has none)."""
    prompt, trained, tail = (tokenizer(t, add_special_tokens=False)["input_ids"] if t else []
                             for t in tokenizer_turn_texts(tokenizer, conversation, ends_turn))
    input_ids = prompt + trained + tail
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids),
            "labels": [IGNORE_INDEX] * len(prompt) + trained + [IGNORE_INDEX] * len(tail)}


def axolotl_template(name: str) -> str:
    """The Jinja source of one of Axolotl's named chat templates, read from its
    package files (importing axolotl itself takes seconds)."""
    spec = importlib.util.find_spec("axolotl")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("axolotl is not installed in this environment: run `make install`")
    path = Path(spec.submodule_search_locations[0]) / "utils" / "chat_templates" / "templates" / f"{name}.jinja"
    if not path.is_file():
        raise ConfigError(f"chat_template: {name!r} is not one of Axolotl's templates "
                          f"(no {path.name} in {path.parent})")
    return path.read_text(encoding="utf-8")


class TokenCounter:
    """Renders conversations and counts tokens; subclasses supply the tokenizer."""
    exact = True
    description = ""

    def __init__(self, template_source: str, special_tokens: dict):
        try:
            self._template = template_environment().from_string(template_source)
        except TemplateError as err:
            raise ConfigError(f"the chat template does not parse: {err}") from None
        self.special_tokens = special_tokens

    def render(self, messages, add_generation_prompt: bool = False) -> str:
        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         **self.special_tokens)
        except TemplateError as err:
            raise ConfigError(f"the chat template cannot render a user/assistant conversation "
                              f"without a system message: {err}. Choose another chat_template.") from None

    def count_texts(self, texts) -> list[int]:
        raise NotImplementedError

    def count_conversations(self, conversations, ends_turn: bool = True) -> list[int]:
        """Tokens of each conversation as training tokenises it (turn_texts: the
        prompt, the continuation, the rest, each apart), special tokens included."""
        end = self.special_tokens.get("eos_token", "")
        parts = [turn_texts(self.render, c, end, ends_turn) for c in conversations]
        counts = iter(self.count_rendered([t for p in parts for t in p]))
        return [sum(next(counts) for _ in p) for p in parts]

    def token_ends(self, texts) -> list[list[int]]:
        """For each text, the character offset where each of its tokens ends: the
        tokens before a cut at c are those ending at or before c (used to rank cut
        points; the chosen cut is then counted exactly)."""
        raise NotImplementedError

    def count_rendered(self, rendered) -> list[int]:
        """Tokens of fully rendered conversations, special tokens included."""
        raise NotImplementedError


class HFCounter(TokenCounter):
    """The base model's own tokenizer.json, run by the `tokenizers` library that
    transformers wraps (same encoding, without transformers' 8-second import)."""

    def __init__(self, tokenizer, special_tokens, template_source, label):
        super().__init__(template_source, special_tokens)
        self.tok = tokenizer
        self.description = label

    def count_texts(self, texts):
        return [len(e.ids) for e in self.tok.encode_batch_fast(list(texts), add_special_tokens=False)]

    def token_ends(self, texts):
        return [[end for _, end in e.offsets]
                for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

    # The template writes the special tokens itself; the tokenizer must not add more.
    count_rendered = count_texts


class TiktokenCounter(TokenCounter):
    def __init__(self, bpe_path: Path, template_source: str):
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe

        ranks = load_tiktoken_bpe(str(bpe_path))
        n = len(ranks)
        names = LLAMA3_NAMED_SPECIALS + [f"<|reserved_special_token_{i}|>"
                                         for i in range(3, LLAMA3_SPECIAL_COUNT - 8)]
        self.enc = tiktoken.Encoding(name=Path(bpe_path).name, pat_str=LLAMA3_PATTERN,
                                     mergeable_ranks=ranks,
                                     special_tokens={t: n + i for i, t in enumerate(names)})
        super().__init__(template_source, LLAMA3_TEMPLATE_TOKENS)
        self.description = f"tiktoken BPE {bpe_path} (Llama 3 special tokens), exact"

    def count_texts(self, texts):
        return [len(ids) for ids in self.enc.encode_ordinary_batch(list(texts))]

    def token_ends(self, texts):
        out = []
        for text, ids in zip(texts, self.enc.encode_ordinary_batch(list(texts))):
            starts = self.enc.decode_with_offsets(ids)[1]
            out.append(starts[1:] + [len(text)])
        return out

    def count_rendered(self, rendered):
        return [len(ids) for ids in self.enc.encode_batch(list(rendered), allowed_special="all")]


class ApproxCounter(TokenCounter):
    exact = False

    def __init__(self, template_source, special_tokens: dict):
        super().__init__(template_source, {"bos_token": "<s>", "eos_token": "</s>", **special_tokens})
        self.description = "APPROXIMATE: 4 characters per token (no tokenizer loaded)"

    def count_texts(self, texts):
        return [max(1, round(len(t) / 4)) for t in texts]

    def token_ends(self, texts):
        return [list(range(4, len(t), 4)) + [len(t)] for t in texts]

    count_rendered = count_texts


def _template_source(config, default_template=None) -> str:
    if config.chat_template == "jinja":
        if not config.axolotl.chat_template_jinja:
            raise ConfigError("chat_template: jinja needs the template in chat_template_jinja")
        return config.axolotl.chat_template_jinja
    name = config.chat_template
    if name == "tokenizer_default":
        if not default_template:
            raise ConfigError("chat_template: tokenizer_default needs a chat template in the base "
                              "model's tokenizer files; name one of Axolotl's templates instead")
        return default_template
    return axolotl_template(name)


def _token_text(value) -> str:
    return value.get("content", "") if isinstance(value, dict) else (value or "")


def _tokenizer_files(base_model: str):
    """tokenizer.json, tokenizer_config.json and chat_template.jinja (None where
    absent): from a local folder, else from the Hugging Face cache or Hub
    (the one download stage 1 may make, of the model the user named)."""
    names = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
    folder = Path(base_model)
    if folder.is_dir():
        return [folder / n if (folder / n).is_file() else None for n in names]
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        found = [hf_hub_download(base_model, names[0])]
    except RuntimeError as err:
        # huggingface_hub 1.x, after a failed connection, closes its HTTP client and
        # then retries on it: with no network the download ends in this RuntimeError.
        if "client has been closed" not in str(err):
            raise
        raise ConnectionError(f"cannot reach the Hugging Face Hub to download {base_model}") from err
    for name in names[1:]:
        try:
            found.append(hf_hub_download(base_model, name))
        except (EntryNotFoundError, LocalEntryNotFoundError):
            found.append(None)
    return found


def _load_hf_tokenizer(base_model: str):
    """(tokenizer, its special tokens by name, its own chat template or None)."""
    from tokenizers import Tokenizer

    tok_json, tok_config, jinja = _tokenizer_files(base_model)
    if tok_json is None:
        raise FileNotFoundError(f"no tokenizer.json in {base_model}")
    meta = json.loads(Path(tok_config).read_text(encoding="utf-8")) if tok_config else {}
    template = Path(jinja).read_text(encoding="utf-8") if jinja else meta.get("chat_template")
    specials = {name: _token_text(meta.get(name)) for name in SPECIAL_TOKEN_NAMES}
    try:
        tokenizer = Tokenizer.from_file(str(tok_json))
    except Exception as err:  # the Rust library raises a bare Exception for any file it cannot read
        raise TokenizerFileError(f"{tok_json} is not a tokenizer the `tokenizers` library can read: {err}") from err
    return tokenizer, specials, template


def _how_to_get_tokenizer(base_model, err) -> str:
    return (f"cannot load the tokenizer of base_model {base_model!r} ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else 'no details'}). Token counts must "
            "be exact, so fix one of: "
            "(1) for a gated model such as Llama 3.1, accept its licence on the model's "
            "Hugging Face page, then run `hf auth login` with a token of that account; "
            "(2) point base_model at a local folder holding tokenizer.json; "
            "(3) set style_pipeline.tiktoken_bpe to Meta's original/tokenizer.model; "
            "(4) set style_pipeline.allow_approximate_tokens: true for an estimate.")


def load_counter(config) -> TokenCounter:
    """The most exact counter this machine can build for the config."""
    counter = _build_counter(config)
    # Fail now, not after every chunk is cut, if the template cannot render our examples
    # or ends the continuation with no end-of-turn token.
    counter.count_conversations([[{"role": "user", "content": "A."}, {"role": "assistant", "content": "B."}]])
    return counter


def _build_counter(config) -> TokenCounter:
    settings = config.pipeline
    base = config.base_model
    try:
        tok, specials, default_template = _load_hf_tokenizer(base)
    except _tokenizer_unavailable() as err:  # gated, offline, missing: the same advice
        if settings.tiktoken_bpe:
            if not settings.tiktoken_bpe.is_file():
                raise ConfigError(f"style_pipeline.tiktoken_bpe: no file at {settings.tiktoken_bpe}")
            return TiktokenCounter(settings.tiktoken_bpe, _template_source(config))
        if settings.allow_approximate_tokens:
            return ApproxCounter(_template_source(config), config_tokens(config)[0])
        raise ConfigError(_how_to_get_tokenizer(base, err)) from None
    _add_config_tokens(tok, config)
    # Axolotl sets the config's special tokens on the tokenizer: the template sees those.
    specials.update({k: v for k, v in config_tokens(config)[0].items() if k in SPECIAL_TOKEN_NAMES})
    label = f"{Path(base).name if Path(base).exists() else base} tokenizer + " \
            f"'{config.chat_template}' chat template, exact"
    return HFCounter(tok, specials, _template_source(config, default_template), label)


def config_tokens(config) -> tuple[dict, list]:
    """(special tokens by role, extra tokens): what Axolotl adds to the tokenizer before
    training, from the config's `special_tokens` and `tokens`. Stage 1 counts with them
    and stages 3-5 load the tokenizer with them: one list for both."""
    special = {k: v for k, v in config.axolotl.special_tokens.items() if isinstance(v, str)}
    extra = list(config.axolotl.tokens)
    return special, extra


def _add_config_tokens(tok, config) -> None:
    """A string the base vocabulary lacks then counts as one token, as in training."""
    from tokenizers import AddedToken

    special, extra = config_tokens(config)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in [*special.values(), *extra]])


def training_template(config) -> str:
    """The Jinja source of the chat template training rendered (for stages 3 and 5)."""
    default = None
    if config.chat_template == "tokenizer_default":
        default = _load_hf_tokenizer(config.base_model)[2]
    return _template_source(config, default)
