# Targets for the local single-node cluster (hack/local-cluster.sh), the
# operator's image built without a container engine, its deployment and the
# e2e tests. Included from the main Makefile; see docs/local-cluster.md.
#
#   make cluster-up        start the local cluster (builds Kubernetes, the S3 server and the
#                          CSI sidecars and driver when they are missing)
#   make csi               build the CSI sidecars, the VolumeSnapshot CRDs and the CSI driver
#   make cluster-down      stop it and remove its state
#   make cluster-status    show its components
#   make -s kubeconfig     print the admin kubeconfig path
#   make image             build the binary and the image, import it into the node
#   make deploy            apply CRDs, RBAC and the controller; roll out a rebuilt image
#   make postgres-image    build the PostgreSQL image drills probe with, import it into the node
#   make e2e               run the e2e tests against the local cluster
#   make demo              cluster, operator, a backup and a restore, from scratch

LOCAL_CLUSTER       := hack/local-cluster.sh
LOCAL_CLUSTER_OUT   := $(or $(LOCAL_CLUSTER_OUTPUT),$(CURDIR)/_output/local-cluster)
# Lazily evaluated: only the recipes that need them ask the script.
LOCAL_KUBECONFIG     = $(shell $(LOCAL_CLUSTER) kubeconfig)
LOCAL_BIN_DIR        = $(shell $(LOCAL_CLUSTER) bindir)
OPERATOR_IMAGE      ?= backup-operator:dev
OPERATOR_BINARY     := $(BINARY)
OPERATOR_IMAGE_TAR  := _output/images/backup-operator.tar
OPERATOR_IMAGE_ID   := _output/images/backup-operator.id
E2E_TIMEOUT         ?= 30m
E2E_FLAGS           ?=
# Tests that disrupt the cluster (a controller killed, the API server restarted, the operator's
# Deployment changed) run first, one at a time; the others, which mostly wait for pods, then run
# this many at once.
E2E_PARALLEL        ?= 4

.PHONY: cluster-up cluster-down cluster-status kubeconfig csi image image-build postgres-image deploy e2e demo

cluster-up: ## Start the local single-node cluster (builds what is missing: Kubernetes, S3 server, CSI).
	@$(LOCAL_CLUSTER) up

# Pinned upstream releases from the Go module proxy, rebuilt only when the binaries in _output/bin
# name other versions; the driver (hack/csi-driver) when its sources are newer. cluster-up runs it too.
csi: ## Build the CSI sidecars (external-snapshotter, external-provisioner), their CRDs and the local CSI driver.
	@hack/csi-sidecars.sh build

cluster-down: ## Stop the local cluster and remove its state.
	@$(LOCAL_CLUSTER) down

cluster-status: ## Show the local cluster's components.
	@$(LOCAL_CLUSTER) status

kubeconfig: ## Print the local cluster's admin kubeconfig path (make -s kubeconfig).
	@$(LOCAL_CLUSTER) kubeconfig

# The static binary and the image tarball; no cluster needed.
image-build: build
	@mkdir -p _output/images
	@echo "==> Building the image $(OPERATOR_IMAGE) -> $(OPERATOR_IMAGE_TAR)"
	@go run ./hack/image -binary $(OPERATOR_BINARY) -path /backup-controller \
		-tag $(OPERATOR_IMAGE) -out $(OPERATOR_IMAGE_TAR) > $(OPERATOR_IMAGE_ID).tmp
	@mv $(OPERATOR_IMAGE_ID).tmp $(OPERATOR_IMAGE_ID)
	@echo "    image ID $$(cat $(OPERATOR_IMAGE_ID))"

# Build, then import into the node's containerd when the cluster runs.
image: image-build ## Build the binary and the image backup-operator:dev, import it into the local node.
	@if $(LOCAL_CLUSTER) status >/dev/null 2>&1; then \
		echo "==> Importing $(OPERATOR_IMAGE) into the local node"; \
		$(LOCAL_CLUSTER) import-image $(OPERATOR_IMAGE_TAR); \
	else \
		echo "    the local cluster is not running: not imported (make cluster-up, then make image)"; \
	fi

# hack/deploy is the overlay for this node; a generated layer on top stamps the
# image ID into the pod template, so a rebuilt image rolls out and an unchanged
# one does not, and the running API server's address (the pod bridge's gateway
# and the port, from the script) into the controller's KUBERNETES_SERVICE_* env.
deploy: image ## Deploy CRDs, RBAC and the controller to the local cluster (rolls out a rebuilt image).
	@$(LOCAL_CLUSTER) status >/dev/null || { echo "ERROR: the local cluster is not running (make cluster-up)"; exit 1; }
	@echo "==> Deploying the operator (kubectl apply -k hack/deploy, image $$(cat $(OPERATOR_IMAGE_ID)), API server $$($(LOCAL_CLUSTER) apiserver-address))"
	@hack/cluster/stamp-overlay.sh $(LOCAL_CLUSTER_OUT)/deploy "$$(cat $(OPERATOR_IMAGE_ID))" "$$($(LOCAL_CLUSTER) apiserver-address)"
	@$(LOCAL_CLUSTER) kubectl apply -k $(LOCAL_CLUSTER_OUT)/deploy
	@$(LOCAL_CLUSTER) kubectl wait --for=condition=Established --timeout=60s \
		crd/backuppolicies.platform.example.com crd/backups.platform.example.com crd/restores.platform.example.com \
		crd/backupstorages.platform.example.com crd/restoredrills.platform.example.com
	@$(LOCAL_CLUSTER) kubectl -n backup-system rollout status deployment/backup-controller --timeout=180s || { \
		$(LOCAL_CLUSTER) kubectl -n backup-system get pods -o wide; \
		$(LOCAL_CLUSTER) kubectl -n backup-system describe pods | tail -n 40; \
		$(LOCAL_CLUSTER) kubectl -n backup-system logs deployment/backup-controller --tail=40 || true; \
		exit 1; }

# The PostgreSQL image that restore drills probe with (hack/postgres-image.sh: this machine's
# postgresql-15 files, no container engine), for the e2e tests and the demo.
postgres-image: ## Build the PostgreSQL image backup-operator-postgres:dev, import it into the local node.
	@hack/postgres-image.sh >/dev/null
	@$(LOCAL_CLUSTER) status >/dev/null 2>&1 || { echo "ERROR: the local cluster is not running (make cluster-up)"; exit 1; }
	@$(LOCAL_CLUSTER) import-image _output/images/postgres.tar

e2e: postgres-image ## Run the e2e tests against the local cluster.
	@$(LOCAL_CLUSTER) status >/dev/null || { echo "ERROR: the local cluster is not running (make cluster-up deploy)"; exit 1; }
	@s3env="$$($(LOCAL_CLUSTER) s3-env)" || { echo "ERROR: the local node's S3 server is not running (make cluster-up)"; exit 1; }; \
	eval "$$s3env"; \
	KUBECONFIG=$(LOCAL_KUBECONFIG) PATH="$(LOCAL_BIN_DIR):$$PATH" E2E_HOSTPATH_DIR=$(LOCAL_CLUSTER_OUT)/state/volumes \
		E2E_CSI_ROOT=$(LOCAL_CLUSTER_OUT)/state/csi/btrfs \
		go test ./test/e2e/... -tags e2e -v -count=1 -parallel $(E2E_PARALLEL) -timeout $(E2E_TIMEOUT) $(E2E_FLAGS)

demo: ## From scratch: cluster, operator, a PVC with data, a Backup and a Restore.
	@hack/demo.sh
