"""Train/validation split by chunk group: deterministic, spread across the book, and
stable as the book grows."""
import hashlib

from styletune.errors import ConfigError

# The words of a group's opening that name it to the split: its identity survives a
# renumbering recut, a split into parts (013a keeps the original's opening) and edits
# further in.
IDENTITY_WORDS = 40


def choose_validation_groups(chunks, share, seed, explicit=()):
    """Return the set of chunk groups held out for validation.

    Parts of one original (013a, 013b) form one group and stay on one side.
    Without an explicit list, the book is read in stretches of 1 / share groups
    from its start (ten for 0.1; their edges at round(k / share), so 0.15 holds out
    15%; the last takes the rest, at least half a stretch), and each stretch holds
    out the group whose opening words, with the seed, hash lowest. So validation
    samples the whole story, not its ending, and it stays put as the writer adds
    chapters: one added at the end changes at most the last stretch's choice, one
    inserted only the choices of the stretches from it on, where drawing from
    equal shares of the book moved most of them and trained on the chunks held
    out before.
    """
    groups = list(dict.fromkeys(c.group for c in chunks))
    if explicit:
        by_name = {c.name: c.group for c in chunks}
        missing = [name for name in explicit if name not in by_name]
        if missing:
            raise ConfigError("style_pipeline.validation_chunks names files that are not "
                              f"chunks being used: {', '.join(missing)}")
        return {by_name[name] for name in explicit}
    if share <= 0 or len(groups) < 2:
        return set()
    n = min(len(groups) - 1, max(1, round(len(groups) * share)))
    edges = [0] + [round(k / share) for k in range(1, n)] + [len(groups)]
    opening = {}
    for c in chunks:
        opening.setdefault(c.group, " ".join(c.text.split()[:IDENTITY_WORDS]))
    rank = lambda g: hashlib.sha256(f"{seed}:{opening[g]}".encode()).hexdigest()  # noqa: E731
    return {min(groups[a:b], key=rank) for a, b in zip(edges, edges[1:])}
