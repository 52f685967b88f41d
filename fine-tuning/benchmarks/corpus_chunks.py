"""Public-domain novels as test and benchmark input: cut into chunk files of
roughly equal size at paragraph breaks (the benchmarks import this too)."""
from pathlib import Path

from styletune.fileio import normalise, read_text
from styletune.text.gutenberg import gutenberg_body
from styletune.text.sentences import paragraph_spans


def paragraph_chunks(text: str, max_chars: int) -> list[str]:
    """Group whole paragraphs into chunks of at most max_chars (a longer paragraph
    stands alone). Joined with blank lines, the chunks give back the text."""
    chunks, current, size = [], [], 0
    for a, b in paragraph_spans(text):
        para = text[a:b]
        if current and size + len(para) > max_chars:
            chunks.append("\n\n".join(current))
            current, size = [], 0
        current.append(para)
        size += len(para) + 2
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def write_novel_as_chunks(novel: Path, dest: Path, max_chars: int = 8000, first: int = 1) -> list[Path]:
    """Write chunk_NNN_<novel>.txt files for one novel (about 2,000 tokens each by
    default), numbered from `first` so several novels can share one folder."""
    body, _ = gutenberg_body(normalise(read_text(novel)))
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, chunk in enumerate(paragraph_chunks(normalise(body), max_chars), first):
        path = dest / f"chunk_{i:04d}_{novel.stem[:20]}.txt"
        path.write_text(chunk + "\n", encoding="utf-8")
        paths.append(path)
    return paths
