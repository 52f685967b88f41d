"""An Axolotl prompt strategy (`type: styletune.train.turns` in the config's
datasets): stage 1's {"messages": [writer's text, continuation]} tokenised as a
server tokenises a request.

Axolotl's own `chat_template` strategy tokenises the whole rendered conversation
as one string and then looks for the assistant's tokens in it. A writer's request
is tokenised alone: the model gets the prompt's tokens and writes the continuation
token by token. The two differ exactly where the writer typed a space or pressed
Enter twice before pausing: in one string "said, " + "Ladies" has the token
" Ladies", in a request the prompt ends in a lone " " and the model must write
"Ladies". This strategy renders the same chat template (the config's, which
Axolotl sets on the tokenizer) and tokenises its three parts apart
(tokens.turn_texts): the prompt (no loss), the continuation with its end-of-turn
token (the loss), and what the template writes after it (no loss). Where the two
parts would not fuse, the tokens are those of the whole string. A join drill's row
(`"ends_turn": false`, data/drills.py) has loss on its continuation only: the
writer's text goes on past it, so it teaches no end of turn.

Axolotl imports it by name: `make install` installs the styletune package into
the environment Axolotl runs in.
"""
from axolotl.prompt_tokenizers import PromptTokenizingStrategy

from styletune.data.tokens import ends_turn, training_ids


class SeparateTurns(PromptTokenizingStrategy):
    """One example: input ids, labels on the continuation and its end token only."""

    def __init__(self, tokenizer, train_on_inputs, sequence_len, field_messages="messages"):
        super().__init__(None, tokenizer, train_on_inputs, sequence_len)
        self.field_messages = field_messages

    def tokenize_prompt(self, prompt):
        return training_ids(self.tokenizer, prompt[self.field_messages], ends_turn(prompt))


def load(tokenizer, cfg, ds_cfg=None):
    """Axolotl's entry point for `type: styletune.train.turns`."""
    field = (ds_cfg or {}).get("field_messages") or "messages"
    return SeparateTurns(tokenizer, cfg.train_on_inputs, cfg.sequence_len, field)
