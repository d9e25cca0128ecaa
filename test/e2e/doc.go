// Package e2e holds the end-to-end tests of the operator. They run against a
// real cluster (normally the local one of hack/local-cluster.sh) and are built
// only with the e2e build tag:
//
//	make cluster-up deploy e2e
//
// or, against any cluster whose admin kubeconfig is in $KUBECONFIG,
//
//	go test ./test/e2e/... -tags e2e -v -count=1
//
// Without KUBECONFIG every test skips. See docs/local-cluster.md.
package e2e
