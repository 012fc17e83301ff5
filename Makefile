# gitopsd: the README explains each target.
SHELL := /bin/bash
GO ?= go
CLUSTER_DIR ?= $(CURDIR)/.cluster
export CLUSTER_DIR
# apt-get needs root; as another user, make runs it through sudo.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

MODULE = github.com/gitopsd/gitopsd
# Packages whose tests start the local control plane.
E2E_PKGS = $(MODULE)/test/cluster $(MODULE)/test/e2e
# Everything else: the pure core and test helpers, no cluster needed.
UNIT_PKGS = $(filter-out $(E2E_PKGS),$(shell $(GO) list ./...))

.PHONY: all test faults lint unit e2e binaries browser cluster demo bench clean

all: test

## test: everything CI runs (.ci/run calls this).
test: lint unit e2e

## lint: gofmt and go vet, on both modules.
lint:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

## unit: unit tests, with the race detector.
unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

## binaries: build the pinned control plane (etcd, kube-*, kubectl, kwok) if missing.
binaries:
	$(GO) run ./test/cmd/localcluster -build-only

## browser: Debian's chromium, for the status page test, if missing.
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the status page test"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

## e2e: end-to-end tests on a real local control plane (the fault cases are `make faults`).
e2e: binaries browser
	$(GO) test -count=1 -p 1 -timeout 40m -skip '^TestFault' $(E2E_PKGS)

## faults: the fault-injection cases (test/e2e TestFault*): kube-apiserver
## killed, git servers that hang or misbehave, a paused leader. CI runs it
## after `make test`.
faults: binaries
	$(GO) test -count=1 -p 1 -timeout 30m -run '^TestFault' $(MODULE)/test/e2e

## cluster: the local cluster in the foreground; kubeconfig at $(CLUSTER_DIR)/kubeconfig.
cluster: binaries
	$(GO) run ./test/cmd/localcluster -dir "$(CLUSTER_DIR)"

## demo: the local cluster with the MySQL stack on it.
demo: binaries
	$(GO) run ./test/cmd/localcluster -dir "$(CLUSTER_DIR)" -demo

## bench: gitopsd against kubectl apply --server-side on the local cluster, ratios printed.
bench: binaries
	$(GO) run ./test/cmd/bench

clean:
	rm -rf .cluster
