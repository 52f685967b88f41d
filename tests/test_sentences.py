"""Where a prompt may end: Punkt plus the guards fiction needs."""
import pytest
from styletune.text.sentences import Tier, boundaries, build_punkt, paragraph_spans


def cuts(text):
    punkt, _ = build_punkt([text])
    return [(text[:b.end], text[b.start:], b.tier) for b in boundaries(text, punkt)]


def prefixes(text, tiers=(Tier.CLEAN, Tier.SPEECH_TAG)):
    """Prefixes a cut may end with, outside quotations unless tiers says otherwise."""
    return [p for p, _, t in cuts(text) if t in tiers]


@pytest.mark.parametrize("title", ["Dr.", "Mr.", "Mrs.", "St.", "Capt.", "Prof."])
def test_never_after_a_title(title):
    text = f"The ship was cold. They called for {title} Watson at once. Nobody came."
    assert not any(p.endswith(title) for p in prefixes(text))
    assert any(p.endswith("at once.") for p in prefixes(text))


def test_never_after_an_initial_or_common_abbreviation():
    text = ("He met J. Smith at 5 a.m. Then they left, e.g. Smith did. Later it rained. "
            "A.J. Fenn arrived with J.R.R. Hale. Nobody spoke.")
    for p in prefixes(text):
        assert not p.endswith(("J.", "a.m.", "e.g.", "A.J.", "J.R.R."))
    assert any(p.endswith("Hale.") for p in prefixes(text))


def test_inside_an_open_quotation_only_as_a_last_resort():
    text = ("“I will tell you. It was cold. It was dark,” he said. The room was silent.\n\n"
            "“We went out. There was nothing there.\n\n“Nothing at all. Then the light came.”\n\n"
            "Nobody answered him.")
    tiers = {p.rsplit(None, 2)[-2] + " " + p.rsplit(None, 1)[-1]: t for p, _, t in cuts(text)}
    for inside in ("tell you.", "was cold.", "went out.", "nothing there.", "at all."):
        assert tiers[next(k for k in tiers if k.endswith(inside))] == Tier.IN_QUOTATION
    assert tiers["he said."] == Tier.CLEAN and tiers["was silent."] == Tier.CLEAN


def test_single_quote_dialogue_and_apostrophes():
    text = "‘Don’t. It’s late. We go,’ she said. Then they left. The twins’ room was cold. It was."
    ps = prefixes(text)
    assert not any(p.endswith(("Don’t.", "It’s late.")) for p in ps)
    assert any(p.endswith("she said.") for p in ps) and any(p.endswith("room was cold.") for p in ps)


def test_never_before_a_lower_case_dialogue_tag():
    text = "The door opened. “Where is it?” she asked. Fenn pointed."
    assert not any(p.endswith("Where is it?”") for p in prefixes(text))


def test_speech_tag_split_is_a_last_resort():
    text = "It was late. “Stop!” Fenn shouted. The door closed."
    tiers = {p.split()[-1]: t for p, _, t in cuts(text)}
    assert tiers["“Stop!”"] == Tier.SPEECH_TAG and tiers["late."] == Tier.CLEAN and tiers["shouted."] == Tier.CLEAN


def test_cut_conserves_text_and_whitespace_only_between():
    text = "One line here.\nSecond paragraph, no blank lines. Third sentence.\nLast one."
    for prefix, completion, _ in cuts(text):
        gap = text[len(prefix):len(text) - len(completion)]
        assert prefix + gap + completion == text and gap.strip() == ""


def test_paragraph_styles():
    assert len(paragraph_spans("One.\nTwo.\nThree.")) == 3          # one paragraph per line
    assert len(paragraph_spans("One\ntwo.\n\nThree\nfour.")) == 2  # hard wrapped, blank-line separated
    # one paragraph per line with a blank line at a scene break: still one per line
    mixed = "He left.\nShe said, \"Fine. Go then.\n\"Go.\"\n\n* * *\n\nMorning came."
    assert [mixed[a:b] for a, b in paragraph_spans(mixed)][:3] == [
        "He left.", 'She said, "Fine. Go then.', '"Go."']


def test_quotes_reset_at_each_line_of_one_paragraph_per_line_text():
    text = "He left.\nShe said, \"Fine. Go then.\n\"Go now.\" He went.\n\nIt rained. It stopped."
    tiers = {p.split("\n")[-1]: t for p, _, t in cuts(text)}
    assert tiers['She said, "Fine.'] == 2          # inside her speech
    assert tiers['"Go now." He went.'] == 0


def test_no_cut_after_the_last_sentence_or_a_scene_break_line():
    text = "First scene ends.\n\n* * *\n\nSecond scene ends."
    assert prefixes(text) == ["First scene ends."]


def test_a_letter_is_cut_in_range_at_one_of_its_paragraph_ends(smol_counter):
    """A letter: each paragraph opens a quotation that runs on into the next, so no
    sentence end lies outside a quotation. The prompt still takes 5-10% of it, ending
    at one of the letter's paragraphs, not after its one-line heading (0.3% of a
    Dracula chapter's letter, before)."""
    from pathlib import Path

    from styletune.data.chunks import Chunk
    from styletune.data.examples import cut_chunks, quoted_paragraph_end
    body = [f'"Paragraph {n} of the letter begins here. It goes on a while. The weather held, and we walked '
            f'along the cliff to the abbey. Nothing more happened that day.' for n in range(40)]
    text = "_Letter, Lucy Westenra to Mina Murray._\n\n" + "\n\n".join(body) + '"\n'
    punkt = build_punkt([text])[0]
    chunk = Chunk(Path("chunk_001_letter.txt"), text, "0")
    [example] = cut_chunks([chunk], punkt, smol_counter, (0.05, 0.10), seed=1, cuts_for=lambda c: 1)
    assert example.in_range and quoted_paragraph_end(text, example.cut)
    assert example.prefix.endswith("Nothing more happened that day.")


def test_a_single_quote_closed_before_a_dash_leaves_the_paragraph_unquoted():
    """Dickens's 'upon liking'--a phrase...: the closing mark before Gutenberg's dash
    closes the quotation, so the paragraph's end is a clean cut (it read as inside a
    quotation that runs on, and stage 1 reported it so)."""
    text = ("It was arranged that Oliver should go to him that evening 'upon\nliking'--a phrase "
            "which means that he shall have him for a term of years.\n\n"
            "When little Oliver was taken before 'the gentlemen' that evening, he wept.\n\n"
            "It was late.")
    tiers = {p.rsplit(None, 1)[-1]: t for p, _, t in cuts(text)}
    assert tiers["years."] == Tier.CLEAN and tiers["wept."] == Tier.CLEAN
    # one hyphen after an apostrophe is a word's (jack-o'-lantern): the speech stays open
    speech = "'Fetch the jack-o'-lantern. Then come back,' he said. It was late."
    assert all(not p.endswith("lantern.") for p in prefixes(speech))


def test_in_lines_wrapped_by_hand_a_line_break_inside_a_speech_is_no_paragraph_end():
    """A cut inside a quotation at a line break of a hard-wrapped paragraph is not at
    one of the speech's paragraph ends (stage 1's report said it was)."""
    from styletune.data.examples import quoted_paragraph_end
    text = ('"I know what you must suffer.\nBut where were you? I waited all the\nevening, '
            'and you never came. It was very late when\nI went home."\n\n'
            '"You were right to wait. I was kept at\nthe theatre till the end of the play.\n\n'
            '"And then the carriage would not come. It\nwas a dreadful night."\n\nHe was silent.')
    punkt = build_punkt([text])[0]
    quoted = [b for b in boundaries(text, punkt) if b.tier == Tier.IN_QUOTATION]
    at = {text[:b.end].rsplit(None, 1)[-1]: quoted_paragraph_end(text, b) for b in quoted}
    assert at["suffer."] is False             # a line break inside the speech
    assert at["play."] is True                # the speech runs on into a new paragraph
