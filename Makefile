# secure-ml-api developer commands: thin wrappers around scripts/ (see the usage block of each).
# Dev tools live in .tools/ (git-ignored) and are installed on first use by scripts/tools.sh.

SHELL := bash
TOOLS_DIR ?= $(CURDIR)/.tools
export TOOLS_DIR
CARGO_LAMBDA := $(TOOLS_DIR)/venv/bin/cargo-lambda

.DEFAULT_GOAL := help
.PHONY: help tools tools-deploy dev test fmt lint train import-model openapi build clean-local

help: ## Show this help
	@echo "Usage: make <target>"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-13s %s\n", $$1, $$2 }'

tools: ## Install dev tools into .tools/ (cargo-lambda, zig, boto3, DynamoDB Local)
	@scripts/tools.sh

tools-deploy: ## Also install aws-sam-cli and cfn-lint (large)
	@scripts/tools.sh --deploy

dev: ## Run the API locally: DynamoDB Local :8000, cargo lambda watch :9000 (Ctrl-C stops all)
	@scripts/dev.sh

test: ## fmt + clippy + all tests against a throwaway local stack (the CI command)
	@scripts/test.sh

fmt: ## Format the workspace
	cargo fmt --all

lint: ## cargo fmt --check and clippy with warnings as errors
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# The model directory: model-artifacts/, or MODEL_ARTIFACTS_DIR (the prediction function's build
# reads the same variable, functions/predict/build.rs). The OpenAPI document of a model elsewhere
# is written next to it, leaving the committed openapi.yaml alone.
MODEL_DIR := $(or $(MODEL_ARTIFACTS_DIR),model-artifacts)
OPENAPI_OUT := $(if $(MODEL_ARTIFACTS_DIR),$(MODEL_ARTIFACTS_DIR)/openapi.yaml,openapi.yaml)

# `make train` retrains the Iris default (its unit and allowed range come from here: the CSV
# holds none); `make train DATA=x.csv TARGET=col [NAME=... VERSION=...]` trains on any numeric
# CSV. Extra flags of the train command (--n-trees, --max-depth, --unit, --minimum, ...) go in
# TRAIN_ARGS. Both then regenerate openapi.yaml's model-dependent part.
IRIS_DATA := model-artifacts/iris.csv
DATA ?= $(IRIS_DATA)
TARGET ?= $(if $(filter $(IRIS_DATA),$(DATA)),species)
TRAIN_DEFAULTS := $(if $(filter $(IRIS_DATA),$(DATA)),--unit cm --exclusive-minimum 0 --maximum 100)

train: ## Train into model-artifacts/ (deterministic): Iris, or DATA=x.csv TARGET=col [NAME= VERSION=]
	@test -n "$(TARGET)" || { echo "make train: TARGET=<column> is required with DATA=$(DATA)" >&2; exit 2; }
	cargo run -p tree-model --bin train --release -- --data "$(DATA)" --target "$(TARGET)" --out-dir "$(MODEL_DIR)" \
		$(if $(NAME),--name "$(NAME)") $(if $(VERSION),--model-version "$(VERSION)") $(TRAIN_DEFAULTS) $(TRAIN_ARGS)
	@$(MAKE) --no-print-directory openapi

import-model: ## Import an ONNX tree ensemble: ONNX=model.onnx [NAME= VERSION= FEATURES=reference.csv]
	@test -n "$(ONNX)" || { echo "make import-model: ONNX=<path/to/model.onnx> is required" >&2; exit 2; }
	cargo run -p model-import --bin import-model --release -- --onnx "$(ONNX)" --out-dir "$(MODEL_DIR)" \
		$(if $(NAME),--name "$(NAME)") $(if $(VERSION),--model-version "$(VERSION)") $(if $(FEATURES),--features "$(FEATURES)")
	@$(MAKE) --no-print-directory openapi

openapi: ## Regenerate openapi.yaml's model schemas and examples from model-artifacts/
	@test -f "$(OPENAPI_OUT)" || cp openapi.yaml "$(OPENAPI_OUT)"
	cargo run -q -p secure-ml-core --no-default-features --bin openapi-model -- \
		--model-dir "$(MODEL_DIR)" --openapi "$(OPENAPI_OUT)"

build: tools ## Cross-compile both functions for Lambda (arm64, release) into target/lambda/
	@rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
	PATH="$(TOOLS_DIR)/venv/bin:$$PATH" $(CARGO_LAMBDA) lambda build --release --arm64 --bin predict --bin token

clean-local: ## Remove local dev state (.dev/: dev signing keys, logs)
	rm -rf .dev

.PHONY: deploy-checks smoke

deploy-checks: ## cfn-lint, sam validate --lint, sam build (arm64 release, minutes), its bootstraps under qemu, package sizes
	@scripts/deploy_checks.sh

smoke: ## Client-flow smoke test: make smoke URL=<ApiUrl> (CLIENT_ID, CLIENT_SECRET in env); no URL: make dev's stack
	@scripts/smoke.sh $(if $(URL),"$(URL)",--dev)

.PHONY: fuzz
fuzz: ## Coverage-guided fuzzing of the parsers, stable toolchain (FUZZ_SECONDS per target, 30)
	@scripts/fuzz.sh

.PHONY: bench
bench: ## Benchmarks (cold start, warm path, CPU path, large models vs onnxruntime, sizes, cost) into BENCHMARKS.md; never fails tests
	@scripts/bench.sh
