# cass-hpc — the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNS ?= runs
DEMO_DATA ?= data/demo
SLURM_STATE ?= /tmp/cass-slurm

.PHONY: help install demo test test-slow lint lock clean benchmark benchmark-local weights task-elpv task-radiogalaxy \
	container \
	test-container \
	bench bench-gpu

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv and install the locked dependencies + this project (no-op when done)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: install  ## pack the synthetic demo set, run the CASS vs supervised grid on CPU, print the tables, draw the maps
	@start=$$(date +%s); set -e; \
	$(PY) -m preprocess synthetic shapes $(DEMO_DATA) --image-size 64 --per-class 150 --overwrite; \
	$(PY) -m cass_hpc.run --multirun experiment=demo runs_dir=$(RUNS) dataset.path=$(DEMO_DATA); \
	$(PY) -m cass_hpc.collect $(RUNS)/demo; \
	$(PY) -m cass_hpc.maps $(RUNS)/demo; \
	echo "demo finished in $$(( $$(date +%s) - start )) s (after installation); data were SYNTHETIC shapes"

# The paper's grid (DINO vs CASS vs supervised × both arms × 5 seeds) on SLURM, one job per cell on
# an RTX8000-class node, every dataset at the label fractions the paper reports for it (no 1 % for
# autoimmune and Dermofit), every net from ImageNet as in the paper (`make weights` first, on a
# machine with internet; BENCH_INIT=random for random init, BENCH_INIT=random,imagenet for both).
# Each dataset's grid is submitted as a DAG and the target returns; `make benchmark` again submits
# only what is not done. Pack the data first (conf/dataset/<name>.yaml says how).
BENCH_DATASETS ?= autoimmune:0.1,1.0 dermofit:0.1,1.0 brain_mri:0.01,0.1,1.0 isic2019:0.01,0.1,1.0
BENCH_LAUNCHER ?= rtx8000
BENCH_INIT ?= imagenet
benchmark: install  ## the paper grid on SLURM from ImageNet weights (make weights first; set CASS_SLURM_PARTITION, CASS_SLURM_ACCOUNT; data in data/<name>)
	@set -u; stamp=$$(date +%Y-%m-%d_%H-%M-%S); \
	for d in $(BENCH_DATASETS); do \
	  $(PY) -m cass_hpc.run --multirun experiment=paper model=paper_pair init=$(BENCH_INIT) \
	    dataset=$${d%%:*} label_fraction=$${d#*:} hydra/launcher=$(BENCH_LAUNCHER) runs_dir=$(RUNS) \
	    hydra.sweep.dir=$(RUNS)/paper/hydra/$$stamp-$${d%%:*} || exit 1; \
	done; \
	echo "queued; follow: $(PY) -m cass_hpc.status $(RUNS)/paper (tables: $(RUNS)/paper/summary)"

weights: install  ## fetch the paper pair's ImageNet weights into the HF cache (login node, online), then verify
	$(PY) -m cass_hpc.weights fetch experiment=paper model=paper_pair init=imagenet
	$(PY) -m cass_hpc.weights verify experiment=paper model=paper_pair init=imagenet

benchmark-local: install  ## the same grid shrunk (synthetic data, 2 seeds, tiny budget) on a local SLURM
	slurm/cluster.sh up $(SLURM_STATE)
	$(PY) -m preprocess synthetic shapes $(DEMO_DATA) --image-size 64 --per-class 150 --overwrite
	SLURM_CONF=$(SLURM_STATE)/etc/slurm.conf $(PY) -m cass_hpc.run --multirun experiment=paper \
	  hydra/launcher=testcluster hydra.launcher.wait=true runs_dir=$(RUNS)/local \
	  dataset.path=$(DEMO_DATA) seed=0,1 pretrain.epochs=1 finetune.max_epochs=2 \
	  || { SLURM_CONF=$(SLURM_STATE)/etc/slurm.conf $(PY) -m cass_hpc.status $(RUNS)/local/paper; exit 1; }
	$(PY) -m cass_hpc.collect $(RUNS)/local/paper

# The field's pretraining methods on real tasks the toolkit was not tuned on, each as one target
# that packs the task, runs its grid through the public CLI and writes its results page
# (docs/results/<task>.md + .png; docs/results/README.md says what each task is):
#   task-elpv         solar-cell EL scans (elpv-dataset), 3 defect classes, test = other modules
#   task-radiogalaxy  VLA FIRST radio galaxies (firstgalaxydata), 4 classes, test = another sky region
# Every method × both arms × TASK_SEEDS at 10 % labels, 64 px, TASK_EPOCHS pretraining epochs;
# DINO at the small-data setting (4,096 prototypes, no local crops: solo-learn's CIFAR recipe; no
# LR warm-up, as 10 of 100 epochs scales to 0 of 4), MAE on the ViT only. About 55 min per task
# on 2 cores (docs/results says what each took).
TASK_METHODS ?= simclr,vicreg,byol,cass,cass_plus,supervised
TASK_DINO ?= dino
TASK_MAE ?= mae
TASK_SEEDS ?= 0,1,2
TASK_EPOCHS ?= 4
TASK_EXTRA ?=
DINO_SMALL ?= method.params.out_dim=4096 method.params.local_crops=0 pretrain.warmup_epochs=0
PAGE_DIR ?= docs/results
ELPV_DATA ?= data/elpv
RADIOGALAXY_DATA ?= data/radiogalaxy
# $(1): the task (dataset and experiment name), $(2): its packed folder
define field_task
	@start=$$(date +%s); set -e; \
	grid="$(PY) -m cass_hpc.run -m experiment=field dataset=$(1) dataset.path=$(2) \
	  experiment_name=$(1) seed=$(TASK_SEEDS) pretrain.epochs=$(TASK_EPOCHS) runs_dir=$(RUNS)"; \
	$$grid method=$(TASK_METHODS) $(TASK_EXTRA); \
	if [ -n "$(TASK_DINO)" ]; then $$grid method=$(TASK_DINO) $(DINO_SMALL) $(TASK_EXTRA); fi; \
	if [ -n "$(TASK_MAE)" ]; then $$grid method=$(TASK_MAE) arm=vit $(TASK_EXTRA); fi; \
	echo "$(1): the grid took $$(( ($$(date +%s) - start) / 60 )) min"; \
	$(PY) -m cass_hpc.collect $(RUNS)/$(1) --page $(PAGE_DIR)
endef

task-elpv: install  ## the real elpv task (solar-cell scans): pack, the field's grid, its page in docs/results
	$(PY) -m preprocess elpv package $(ELPV_DATA) --image-size 64
	$(call field_task,elpv,$(ELPV_DATA))

task-radiogalaxy: install  ## the real radiogalaxy task (FIRST radio galaxies): pack, grid, page
	$(PY) -m preprocess radiogalaxy package $(RADIOGALAXY_DATA) --image-size 64
	$(call field_task,radiogalaxy,$(RADIOGALAXY_DATA))

# Speed (issue 15; cass_hpc/bench/PERF.md): CASS's step against DINO's (P1), its loader (P2) and
# the machine's matmul ceiling (P3). The CPU by default; on a GPU node the same command measures the GPU.
bench: install  ## time CASS vs DINO, the loader and the matmul ceiling here (P1-P3; < 3 min on 2 cores)
	$(PY) -m cass_hpc.bench --out $(RUNS)/bench/bench.json

bench-gpu: install  ## the 5-minute GPU check: P1-P3 at 224/384 px in bf16 and fp16, a paper-pair epoch, brain-MRI time
	$(PY) -m cass_hpc.bench.gpu --out $(RUNS)/bench/gpu

test: install  ## lint, then run the default test suite (< 10 min on 2 cores)
	$(PY) -m ruff check cass_hpc preprocess hydra_plugins tests
	$(PY) -m pytest

test-slow: install  ## the slow tests (experiment grids, make task-elpv at a tiny budget, 24-cell SLURM DAG, a failed pretraining on SLURM, requeues, kill -9 resume, two grids at once, SIGTERM; ~22 min)
	$(PY) -m pytest -m slow || [ $$? -eq 5 ]

# The image every job can run in (containers/README.md): apptainer builds $(CONTAINER_SIF) from
# containers/cass.def; without apptainer, podman or docker build $(CONTAINER_TAG) from the Containerfile.
CONTAINER_ENGINE ?= auto
CONTAINER_SIF ?= cass.sif
CONTAINER_TAG ?= localhost/cass-hpc:latest
container:  ## build the container image (apptainer -> cass.sif, else podman/docker)
	containers/build.sh --engine $(CONTAINER_ENGINE) --sif $(CONTAINER_SIF) --tag $(CONTAINER_TAG)

test-container: install  ## slow (~10 min): build the Containerfile with podman offline, run the tests in it
	CASS_TEST_CONTAINER=1 $(PY) -m pytest -m slow tests/containers -x -q -s -p no:cacheprovider --durations=0

lint: install  ## ruff lint + format check
	$(PY) -m ruff check cass_hpc preprocess hydra_plugins tests
	$(PY) -m ruff format --check cass_hpc preprocess hydra_plugins tests

lock:  ## rewrite requirements.lock from the current .venv
	{ echo "# Exact versions installed by 'make install' (pip freeze of a working venv; Python 3.11, linux x86_64)."; \
	  echo "# Regenerate with: make lock"; $(PY) -m pip freeze --exclude-editable; } > requirements.lock

clean:  ## remove demo data and runs (keeps .venv)
	rm -rf $(RUNS) $(DEMO_DATA)
