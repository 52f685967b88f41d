"""Stage 1's report: the summary table (printed, JSON, Markdown) and a length histogram."""
import io
import statistics

from styletune import paths
from styletune.data.drills import CONTINUATION_WORDS, KINDS


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
    """How the turns meet, and how many examples carry Continue's path line."""
    return {"completion_opens_with_space": sum(e.completion[:1] == " " for e in examples),
            "completion_opens_with_paragraph_break": sum(e.completion[:1] == "\n" for e in examples),
            "prompt_ends_with_typed_space": sum(e.prefix.endswith(" ") for e in examples),
            "prompt_ends_with_typed_paragraph_break": sum(e.prefix.endswith("\n") for e in examples),
            "continue_path_line": sum(bool(e.header) for e in examples)}


def drill_counts(drills) -> dict:
    """Join drills by kind, in drills.KINDS order, and their tokens in all."""
    return {"by_kind": {k: n for k in KINDS if (n := sum(d.kind == k for d in drills))},
            "rows": len(drills), "tokens": sum(d.total_tokens for d in drills),
            "after_chat_system_message": sum(bool(d.system) for d in drills)}


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
        "validation_chunks": sorted({e.chunk.name for e in result.validation}),
        "skipped": [{"file": f, "reason": r} for f, r in result.skipped],
        "skipped_overlong": [{"file": e.chunk.name, "tokens": e.total_tokens}
                             for e in result.overlong_skipped],
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
        f"Joins: {report['joins']['completion_opens_with_space']} completion(s) open with the space at "
        f"the cut, {report['joins']['completion_opens_with_paragraph_break']} with the paragraph break, "
        f"{report['joins']['prompt_ends_with_typed_space']} prompt(s) end with the space typed and "
        f"{report['joins']['prompt_ends_with_typed_paragraph_break']} with the paragraph break typed "
        "(typed_join_share); "
        f"{report['joins']['continue_path_line']} user turn(s) start with Continue's autocomplete path line.",
        "",
        _drills_line(report["join_drills"]),
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
            f"message. Where they stop: {kinds}.")


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
