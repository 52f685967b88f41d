"""The pipeline's package: one module per job, grouped by stage. Each script in
fine-tuning/training/ is a parser plus one call into the module named below.

text/       one text layer, shared by every stage that reads prose
  patterns    page markers, scene-break lines, sentence-end punctuation
  paragraphs  paragraph spans (blank-line or one-per-line), hard-wrapped text
  sentences   where a sentence ends (Punkt plus fiction's guards), a plain splitter
  quotes      quotation depth at a cut, quoted spans for dialogue measures
  stops       where a writer pauses mid-flow (after a comma, inside a word, ...):
              stage 4 measures the joins there, stage 1 drills them
  gutenberg   Project Gutenberg's header and licence, removed
  docx        a Word manuscript as text (italics as *...*, heading styles as #)
data/       stages 0 and 1: from manuscript to training examples
  manuscript  a manuscript's chapters, scenes and paragraphs, and its chunk plan
  segment     stage 0 (0_segment_manuscript.py): prints and writes the chunks
  seam_model  how much each paragraph start reads like a scene change (learned;
              seam_model.json); seam_training: its labels and fit (train_seam_model.py)
  seams       the chunker stage 0 and the splitter share: seam scores minus a length cost
  review      stage 0's review of its guesses, and the writer's decisions
  split_oversized  split_oversized_chunks.py: a/b parts, original into backup/
  chunks      which files of a book folder are chunks, read without changing a word
  examples    the prefix/completion cut of each chunk, Continue's path line
  drills      join drills: short rows stopping mid-flow, trained without an end of turn
  openings    scene openings: a chunk's opening after the end of the chunk before it
  holdout     train/validation by chunk group
  tokens      exact token counts, as Axolotl will see each example
  prepare     stage 1 (1_prepare_data.py); prepare_report: its tables and histogram
train/      stages 2 and 3: the adapter
  preflight   stage 2's checks and plan (train_preflight.py, run by 2_train_lora.sh)
  gpu_plan    memory per GPU for 1-8 GPUs (DDP, FSDP), time, Axolotl's launch arguments
  merge       stage 3 (3_merge_adapter.py): the in-memory merge and the CLI
  merge_streamed  the same merge shard by shard, for a model the RAM cannot hold
  shards      what it reads: the adapter's and the base's safetensors, header first
  merge_check its check: a sample of merged layers recomputed independently
  adapter     which adapter stage 3 merges (lowest validation loss), and its base
  resources   where a model loads (choose_placement: stages 3 and 4), the merge's route,
              disk and RAM
  models      the base as training saw it, the tokenizer, probes, logits, the verdict
              (stages 3-5)
  merge_output  the merged folder both routes write: .partial, manifest, into place
  checkpoints Axolotl's checkpoint-N folders, newest and by step
  model_size  a model's shape and parameter count (GQA, tied embeddings), for memory plans
  bnb_cpu     4-bit layers on a CPU with AVX512-BF16 kept on the trainable path
  axolotl_plugin  the rehearsal config's Axolotl plugin: bnb_cpu, and CPU processes
  turns       the configs' Axolotl prompt strategy: prompt and continuation tokenised apart
eval/       stage 4 (4_evaluate_style.py)
  evaluate    stage 4 itself: perplexity of held-out completions, continuations from both models
  prompts     where the models are asked to go on: validation windows, the Joins' pauses, the seed
  stylometry  the style profile: words, sentence lengths, dialogue, punctuation, MATTR
  attribution  whose prose it reads as: Cosine Delta, character n-gram attribution
  health      loops, copying from training, clean endings
  report      verdicts and the report files (md, json, png)
deploy/     stage 5 (5_configure_continue.py)
  serve       stage 5 itself: the Ollama Modelfile, the server commands, SERVE.md, --try
  templates   what each route renders per training template (Ollama's Go TEMPLATE,
              Continue's autocomplete template) and the tokens generation stops at
  continue_files  Continue's model entries and rules file, and --install into ~/.continue
  llamacpp    the GGUF converter, quantiser and llama-server, and the GGUF's checks
  fit         which quantisation fits which card (file size + KV cache + runtime)
book        stages 0-5 in order for one book (book_to_editor.py, make book)
chat        what Continue's chat sends before the writer's text (stage 5 writes it, stage 4 measures under it)
config      the one YAML (extends:, merge, Axolotl's keys); settings: every
            style_pipeline key once, with type, default and meaning
cli         each script's --config and its one-line errors; errors: the error types
fileio      the author's files read without changing a word, outputs written atomically
paths       every relative path in the YAML resolves against fine-tuning/
startup     what every process sets up first (privacy: trackers off; no hub code)
"""
