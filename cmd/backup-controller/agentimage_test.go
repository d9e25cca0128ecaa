package main

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
)

func TestResolveAgentImage(t *testing.T) {
	ownPod := func(containers ...string) *corev1.Pod {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "backup-system", Name: "backup-controller-7d9f"}}
		for _, c := range containers {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c, Image: "backup-operator:" + c})
		}
		return pod
	}
	inCluster := map[string]string{envPodName: "backup-controller-7d9f", envPodNamespace: "backup-system"}
	tests := []struct {
		name      string
		flag      string
		kubecfg   string
		env       map[string]string
		pod       *corev1.Pod
		want      string
		wantError string
	}{
		{"the flag wins", "agent:v2", "", inCluster, ownPod("controller"), "agent:v2", ""},
		{"the flag is enough outside the cluster", "agent:v2", "/kubeconfig", nil, nil, "agent:v2", ""},
		{"the controller container's image", "", "", inCluster, ownPod("proxy", "controller"), "backup-operator:controller", ""},
		{"the only container's image", "", "", inCluster, ownPod("main"), "backup-operator:main", ""},
		{"several containers, none the controller", "", "", inCluster, ownPod("a", "b"), "", `no container named "controller" among a, b`},
		{"the pod cannot be read", "", "", inCluster, nil, "", "reading the controller's own pod backup-system/backup-controller-7d9f"},
		{"outside the cluster without the flag", "", "/kubeconfig", nil, nil, "", "--agent-image is required outside the cluster"},
		{"in the cluster without the downward API", "", "", map[string]string{envPodName: "x"}, nil, "", "set --agent-image, or set POD_NAME and POD_NAMESPACE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := kubefake.NewSimpleClientset()
			if tc.pod != nil {
				client = kubefake.NewSimpleClientset(tc.pod)
			}
			var opts options
			opts.agentImage, opts.kubeconfig = tc.flag, tc.kubecfg
			got, err := resolveAgentImage(context.Background(), opts, func(k string) string { return tc.env[k] }, client)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("error %v, want one saying %q", err, tc.wantError)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("resolveAgentImage = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
