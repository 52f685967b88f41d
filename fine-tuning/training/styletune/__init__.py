"""The shared logic of the numbered stage scripts beside this package.

cli         each script's parser (--config) and its one-line errors
config      the one YAML (and the rehearsal overlay), paths resolved against fine-tuning/
chunks      which files of a book folder are chunks, read without changing a word
sentences   where a prompt may end (Punkt plus fiction's guards)
tokens      exact token counts, as Axolotl will see each example
examples    the prefix/completion cut of each chunk
split       train/validation by chunk group
stage1      stage 1 end to end (stage1_cli: what the script prints and writes)
report      stage 1's tables and histogram
train_prep  stage 2's preflight checks and plan
corpus      public-domain novels as benchmark and test input
segment     stage 0: a manuscript's chapters, scenes and paragraphs, and its chunks (segment_cli: the script)
docx_reader a Word manuscript as text (italics as *...*, heading styles as #)
split_chunks  scored paragraph cuts that make a passage fit, with stage 1's exact example count
split_cli   split_oversized_chunks.py: a/b parts, original into backup/
bnb_cpu     4-bit layers on a CPU with AVX512-BF16: kept on bitsandbytes' trainable path
axolotl_plugin  the rehearsal config's Axolotl plugin that applies bnb_cpu in training
startup     what every process sets up first (trackers off, no hub code, quiet known warnings)
merge       stage 3: which adapter, the merge into the NF4 base training saw, the logits check
evaluate    stage 4: perplexity of held-out completions and continuations from both models
stylometry  stage 4's text measures: Cosine Delta, char n-gram attribution, style profile, repetition, copying
style_report  stage 4's verdicts and report files (md, json, png)
serving     stage 5: Ollama Modelfile, vLLM command, Continue entry and rules, --install
gotemplate  a port of the Go text/template subset Ollama TEMPLATEs use, for parity tests
"""
