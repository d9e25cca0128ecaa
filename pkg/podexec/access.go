package podexec

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// permission is one RBAC rule the agent needs in the application's namespace.
type permission struct {
	name, verb, subresource, rule string
}

var (
	permExec    = permission{"create pods/exec", "create", "exec", `{apiGroups: [""], resources: ["pods/exec"], verbs: ["create"]}`}
	permGet     = permission{"get pods", "get", "", `{apiGroups: [""], resources: ["pods"], verbs: ["get"]}`}
	permissions = []permission{permExec, permGet}
)

// ForbiddenError means the agent's ServiceAccount lacks RBAC permissions in the namespace, so
// the fix is a Role and a RoleBinding, which the message spells out.
type ForbiddenError struct {
	Namespace string
	// Missing lists what is lacking: "create pods/exec", "get pods" or both.
	Missing []string
	// Err is the API server's refusal when a request was denied, nil when an access review said no.
	Err error
}

func (e *ForbiddenError) Error() string {
	var rules []string
	for _, p := range permissions {
		for _, m := range e.Missing {
			if m == p.name {
				rules = append(rules, p.rule)
			}
		}
	}
	what := "the rule "
	if len(rules) > 1 {
		what = "the rules "
	}
	msg := fmt.Sprintf("the agent's ServiceAccount may not %s in namespace %q: grant it a Role with %s%s "+
		"and bind it to the ServiceAccount named in the policy's execServiceAccountName; see manifests/examples/exec-rbac.yaml",
		strings.Join(e.Missing, " or "), e.Namespace, what, strings.Join(rules, " and "))
	if e.Err != nil {
		msg += " (the API server said: " + e.Err.Error() + ")"
	}
	return msg
}

// Unwrap lets callers reach the API server's *apierrors.StatusError.
func (e *ForbiddenError) Unwrap() error { return e.Err }

// CheckAccess asks the API server (SelfSubjectAccessReview) whether the agent may get pods and
// create pods/exec in namespace, so that a missing Role is reported as such before anything
// runs. It returns a *ForbiddenError naming only the missing permissions.
func CheckAccess(ctx context.Context, client kubernetes.Interface, namespace string) error {
	var missing []string
	for _, p := range permissions {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: p.verb, Resource: "pods", Subresource: p.subresource},
		}}
		got, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("asking the API server whether the agent may %s in namespace %q: %w", p.name, namespace, err)
		}
		if !got.Status.Allowed {
			missing = append(missing, p.name)
		}
	}
	if len(missing) > 0 {
		return &ForbiddenError{Namespace: namespace, Missing: missing}
	}
	return nil
}
