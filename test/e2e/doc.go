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
//
// Each test works in a namespace of its own and calls t.Parallel, except those that disrupt
// the whole cluster (a controller killed, the API server restarted, the operator's Deployment
// changed): Go runs those first, one at a time, and the others together afterwards, up to
// -parallel at once (make e2e passes E2E_PARALLEL, 4).
package e2e
