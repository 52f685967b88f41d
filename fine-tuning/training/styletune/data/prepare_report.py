"""Stage 1's report: the summary table (printed, JSON, Markdown) and a length histogram."""
import io
import statistics

from styletune import paths
from styletune.data.drills import CONTINUATION_WORDS, KINDS
from styletune.data.openings import OPENING, follows
from styletune.text.paragraphs import layout, whitespace_kind


def summary(result) -> dict:
    lengths = [e.total_tokens for e in result.examples]
    seq = result.config.sequence_len
    return {
        "chunks": len(result.chunks),
        "training_examples": len(result.train),
        "validation_examples": len(result.validation),
        "max_tokens": max(lengths, default=0),
        "average_tokens": round(statistics.fmean(lengths)) if lengths else 0,
        "over_3000": sum(n > 3000 for n in lengths),
        "over_4000": sum(n > 4000 for n in lengths),
        f"over_sequence_len_{seq}": sum(n > seq for n in lengths) + len(result.overlong_skipped),
    }


def joins(examples) -> dict:
    """How the turns meet (where the whitespace at the cut went, and what it is in its
    chunk's layout: join_kinds), and how many examples carry Continue's path line."""
    kinds = [join_kinds(e) for e in examples]
    counts = {}
    for side, at in (("completion_opens_with", 0), ("prompt_ends_with_typed", 1)):
        for kind in ("space", "paragraph break", "line break"):
            counts[f"{side}_{kind.replace(' ', '_')}"] = sum(k[at] == f"a {kind}" for k in kinds)
    return {**counts, "continue_path_line": sum(bool(e.header) for e in examples)}


def _joins_line(j: dict) -> str:
    wrapped = j["completion_opens_with_line_break"] + j["prompt_ends_with_typed_line_break"]
    return (f"Joins: {j['completion_opens_with_space']} completion(s) open with the space at the cut, "
            f"{j['completion_opens_with_paragraph_break']} with the paragraph break, "
            f"{j['prompt_ends_with_typed_space']} prompt(s) end with the space typed and "
            f"{j['prompt_ends_with_typed_paragraph_break']} with the paragraph break typed (typed_join_share); "
            + (f"{wrapped} at a line break inside a hard-wrapped paragraph; " if wrapped else "")
            + f"{j['continue_path_line']} example(s) start with Continue's autocomplete path line.")


def join_kinds(example) -> tuple[str, str]:
    """(what the completion opens with, what the prompt ends with), each a
    paragraphs.whitespace_kind ("a space", "a paragraph break", ...; "" for a word)."""
    text_layout = layout(example.chunk.text)
    completion, prefix = example.completion, example.prefix
    return (whitespace_kind(completion[:len(completion) - len(completion.lstrip())], text_layout),
            whitespace_kind(prefix[len(prefix.rstrip()):], text_layout))


def drill_counts(drills) -> dict:
    """Join drills by kind, in drills.KINDS order, and their tokens in all."""
    return {"by_kind": {k: n for k in KINDS if (n := sum(d.kind == k for d in drills))},
            "rows": len(drills), "tokens": sum(d.total_tokens for d in drills),
            "after_chat_system_message": sum(bool(d.system) for d in drills),
            "after_continue_path_line": sum(bool(d.header) for d in drills)}


def opening_counts(result) -> dict:
    """Scene openings: rows, tokens, where each row's separator came from, and the
    neighbouring chunks no row crosses, with why (an unknown separator, a validation
    chunk on one side, a gap in the numbering)."""
    on = result.config.pipeline.scene_openings
    too_long = [r.chunk.name for r in result.long_rows if r.kind == OPENING]
    held_out = [d.chunk.name for d in result.validation_openings]
    crossed = {d.chunk.name for d in result.openings} | set(too_long) | set(held_out)
    names = [c.name for c in result.chunks]
    return {"rows": len(result.openings), "tokens": sum(d.total_tokens for d in result.openings),
            "separator_from": {src: n for src in SEPARATOR_SOURCES
                               if (n := sum(d.chunk.source == src for d in result.openings))},
            "after_chat_system_message": sum(bool(d.system) for d in result.openings),
            "after_continue_path_line": sum(bool(d.header) for d in result.openings),
            "text_between_unknown": [{"seam": s.name, "why": s.source} for s in result.seams
                                     if on and s.separator is None],
            "beside_validation_or_left_out": [s.name for s in result.seams if on and s.separator is not None
                                              and s.name not in crossed],
            "over_sequence_len": too_long,
            "held_out": {"rows": len(held_out), "seams": held_out,
                         "tokens": sum(d.total_tokens for d in result.validation_openings)},
            "gaps": [f"{a} + {b}" for a, b, ca, cb in zip(names, names[1:], result.chunks, result.chunks[1:])
                     if on and not follows(ca, cb)]}


def report_dict(result) -> dict:
    ratios = [e.ratio for e in result.examples]
    lo, hi = result.config.pipeline.prefix_ratio
    return {
        "book_dir": paths.shown(result.book_dir),
        "config": paths.shown(result.config.path),
        "tokenizer": result.tokenizer,
        "token_counts_exact": result.exact,
        "sentence_splitter": result.splitter,
        "sequence_len": result.config.sequence_len,
        "summary": summary(result),
        "prefix_ratio_target": [lo, hi],
        "prefix_ratio_observed": [round(min(ratios), 4), round(max(ratios), 4)] if ratios else None,
        "joins": joins(result.examples),
        "join_drills": drill_counts(result.drills),
        "scene_openings": opening_counts(result),
        "validation_chunks": sorted({e.chunk.name for e in result.validation}),
        "skipped": [{"file": f, "reason": r} for f, r in result.skipped],
        "skipped_overlong": [{"file": e.chunk.name, "tokens": e.total_tokens}
                             for e in result.overlong_skipped],
        "short_rows_left_out_over_sequence_len": [{"rows_of": r.chunk.name, "kind": r.kind, "tokens": r.total_tokens}
                                                  for r in result.long_rows],
        "exceptions": [{"file": f, "reason": r} for f, r in result.exceptions()],
    }


def _table(rows, header) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in rows])


def markdown(report: dict) -> str:
    header = [
        "# Stage 1 report: training data",
        "",
        f"- Book: `{report['book_dir']}`  ",
        f"- Config: `{report['config']}`  ",
        f"- Tokens: {report['tokenizer']}  ",
        f"- Sentences: {report['sentence_splitter']}",
        "",
    ]
    return "\n".join(header) + "\n" + markdown_body(report)


def markdown_body(report: dict) -> str:
    """The summary table and the lists: what the terminal shows too."""
    label = "" if report["token_counts_exact"] else " (APPROXIMATE)"
    s = report["summary"]
    out = [
        _table([[v for v in s.values()]], [k.replace("_", " ") + (label if "tokens" in k else "")
                                           for k in s]),
        "",
        f"Prefix ratio: target {report['prefix_ratio_target'][0]:.0%}-"
        f"{report['prefix_ratio_target'][1]:.0%} of each example's tokens; observed "
        + (f"{report['prefix_ratio_observed'][0]:.1%}-{report['prefix_ratio_observed'][1]:.1%}."
           if report["prefix_ratio_observed"] else "none."),
        "",
        "Validation chunks: " + (", ".join(f"`{c}`" for c in report["validation_chunks"]) or "none"),
        "",
        _joins_line(report["joins"]),
        "",
        _drills_line(report["join_drills"]),
        "",
        _openings_line(report["scene_openings"]),
        "",
    ]
    for title, rows, header in (
        ("Skipped files", [[f"`{r['file']}`", r["reason"]] for r in report["skipped"]], ["file", "reason"]),
        ("Left out: longer than sequence_len",
         [[f"`{r['file']}`", r["tokens"]] for r in report["skipped_overlong"]], ["file", "tokens"]),
        ("Exceptions to look at", [[f"`{r['file']}`", r["reason"]] for r in report["exceptions"]],
         ["file", "reason"]),
    ):
        out += [f"## {title}", "", _table(rows, header) if rows else "None.", ""]
    return "\n".join(out)


def _drills_line(drills: dict) -> str:
    if not drills["rows"]:
        return "Join drills: none (join_drills_per_chunk: 0)."
    kinds = "; ".join(f"{kind} {n}" for kind, n in drills["by_kind"].items())
    return (f"Join drills: {drills['rows']} training rows, {drills['tokens']} tokens in all "
            f"(join_drills_per_chunk), each a window of the text continued {CONTINUATION_WORDS} words "
            f"with no end of turn; {drills['after_chat_system_message']} after the chat route's system "
            f"message, {drills['after_continue_path_line']} after Continue's autocomplete path line. "
            f"Where they stop: {kinds}.")


SEPARATOR_SOURCES = {"stage 0": "the text stage 0 found between them",
                     "split": "the whitespace between the parts of a split chunk",
                     "paragraph break": "a paragraph break (chunks cut by hand: the text between them is not recorded)"}


def _openings_line(o: dict) -> str:
    head = (f"Scene openings: {o['rows']} training rows, {o['tokens']} tokens in all (scene_openings), "
            "each a chunk's opening up to its first cut (no example's completion holds it) after the "
            "last words of the chunk before and the text between them"
            + "".join(f"; {n} with {SEPARATOR_SOURCES[src]}" for src, n in o["separator_from"].items())
            + f"; {o['after_chat_system_message']} after the chat route's system message, "
              f"{o['after_continue_path_line']} after Continue's autocomplete path line." if o["rows"]
            else "Scene openings: none (scene_openings: false, or no two training chunks follow each other).")
    rest = []
    if o["held_out"]["rows"]:
        rest.append(f"Held out: {o['held_out']['rows']} validation chunk opening(s), "
                    f"{o['held_out']['tokens']} tokens, in validation.jsonl (the validation loss; stage 4 "
                    "scores them): " + ", ".join(o["held_out"]["seams"]) + ".")
    if o["text_between_unknown"]:
        rest.append("Not crossed, the text between unknown: "
                    + "; ".join(f"{u['seam']} ({u['why']})" for u in o["text_between_unknown"]) + ".")
    if o["beside_validation_or_left_out"]:
        rest.append(f"Not crossed ({len(o['beside_validation_or_left_out'])}), a validation chunk or one "
                    "left out on one side: " + ", ".join(o["beside_validation_or_left_out"]) + ".")
    if o["over_sequence_len"]:
        rest.append("Left out, longer than sequence_len: " + ", ".join(o["over_sequence_len"]) + ".")
    if o["gaps"]:
        rest.append("Chunks that do not follow by their numbers (a number skipped; no row crosses): "
                    + ", ".join(o["gaps"]) + ".")
    return " ".join([head] + rest)


def histogram_png(result) -> bytes:
    """Example lengths with the sequence_len line: how much room is left at a glance."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    seq = result.config.sequence_len
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    series = [[e.total_tokens for e in result.train], [e.total_tokens for e in result.validation]]
    top = max([seq] + series[0] + series[1]) * 1.05
    bins = [top * i / 40 for i in range(41)]
    ax.hist(series, bins=bins, stacked=True, label=[f"training ({len(series[0])})",
                                                    f"validation ({len(series[1])})"],
            color=["#4c72b0", "#dd8452"])
    ax.axvline(seq, color="#c44e52", linestyle="--", label=f"sequence_len = {seq}")
    unit = "tokens" if result.exact else "tokens (approximate)"
    ax.set_xlabel(f"example length, {unit}")
    ax.set_ylabel("examples")
    ax.set_title("Stage 1: example lengths")
    ax.set_xlim(0, top)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
