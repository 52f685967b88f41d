"""Train/validation split by chunk group: deterministic, spread across the book."""
import random

from styletune.errors import ConfigError


def choose_validation_groups(chunks, share, seed, explicit=()):
    """Return the set of chunk groups held out for validation.

    Parts of one original (013a, 013b) form one group and stay on one side.
    Without an explicit list, the book is cut into equal stretches and one group
    is drawn from each, so validation samples the whole story, not its ending.
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
    n = min(len(groups) - 1, max(1, round(share * len(groups))))
    rng = random.Random(f"{seed}:validation")
    picked = set()
    for i in range(n):
        stretch = groups[i * len(groups) // n:(i + 1) * len(groups) // n]
        picked.add(rng.choice(stretch))
    return picked
