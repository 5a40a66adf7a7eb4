# The two commands a newcomer needs: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: venv sysdeps test test-unit test-node test-kernel test-cluster lint demo clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Debian packages the root tiers use (iptables, ipset, stress-ng, containerd, qemu, ...), when missing.
sysdeps:
	bash testbed/sysdeps.sh

test-unit: venv
	$(BIN)/pytest -q tests/unit

# Root, real Linux: network namespaces, veth, iptables/ipset/tc, containerd + runc, stress-ng.
test-node: venv sysdeps
	$(BIN)/pytest -q -rs tests/node

# netem and friends, in a Debian kernel booted under qemu (this kernel has no netem).
test-kernel: venv sysdeps
	$(BIN)/pytest -q -rs tests/kernel

# A real kube-apiserver + etcd built from Go modules (cached under ~/.cache/faultmesh/testbed).
test-cluster: venv sysdeps
	testbed/kube/build.sh
	testbed/helm/build.sh
	$(BIN)/pytest -q -rs tests/cluster

# Every tier; a tier skips only with a printed reason when its prerequisite cannot exist here.
test: lint test-unit test-node test-kernel test-cluster

# Host mode on this machine (root): a tiny service, four faults from examples/host, their effect, a report.
demo: venv sysdeps
	$(BIN)/python -m faultmesh.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
