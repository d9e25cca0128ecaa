package monitoring

import (
	"fmt"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// checker checks PromQL expressions against what the operator exposes.
type checker struct {
	exp    *exposition
	parser parser.Parser
	// job, when set, is the only value an equality matcher on job may have.
	job string
}

func newChecker(exp *exposition) *checker {
	return &checker{exp: exp, parser: parser.NewParser(parser.Options{})}
}

// check parses expr and returns what is wrong with it: a series the operator does not expose, a
// matcher on a label the series does not have or on a result it never reports, a grouping or
// matching label that no series in its scope has.
func (c *checker) check(expr string) []error {
	root, err := c.parser.ParseExpr(expr)
	if err != nil {
		return []error{err}
	}
	var errs []error
	parser.Inspect(root, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			errs = append(errs, c.checkSelector(n)...)
		case *parser.AggregateExpr:
			if !n.Without {
				errs = append(errs, c.checkAvailable(n.Grouping, fmt.Sprintf("%s by", n.Op), n.Expr)...)
			}
		case *parser.BinaryExpr:
			if m := n.VectorMatching; m != nil && m.On {
				errs = append(errs, c.checkAvailable(m.MatchingLabels, fmt.Sprintf("%s on", n.Op), n.LHS, n.RHS)...)
			}
		}
		return nil
	})
	return errs
}

// selected returns the names of the series a selector selects, and an error when there are none.
func (c *checker) selected(vs *parser.VectorSelector) ([]string, error) {
	if vs.Name != "" {
		if _, ok := c.exp.lookup(vs.Name); !ok {
			return nil, fmt.Errorf("%s: the operator exposes no metric %s", vs, vs.Name)
		}
		return []string{vs.Name}, nil
	}
	var names []string
	for _, m := range vs.LabelMatchers {
		if m.Name != labels.MetricName {
			continue
		}
		for _, n := range c.exp.names() {
			if m.Matches(n) {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("%s: %s matches no metric the operator exposes", vs, m)
		}
	}
	if names == nil {
		return nil, fmt.Errorf("%s: a selector without a metric name", vs)
	}
	return names, nil
}

func (c *checker) checkSelector(vs *parser.VectorSelector) []error {
	names, err := c.selected(vs)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName {
			continue
		}
		for _, name := range names {
			info, _ := c.exp.lookup(name)
			if info.labels != nil && !info.labels[m.Name] && !targetLabels[m.Name] {
				errs = append(errs, fmt.Errorf("%s: %s has no label %q (it has %s, and the target labels)", vs, name, m.Name, strings.Join(keys(info.labels), ", ")))
			}
		}
		switch {
		case m.Name == "result" && !matchesAny(m, c.exp.results):
			errs = append(errs, fmt.Errorf("%s: %s matches no result the operator reports (%s)", vs, m, strings.Join(keys(c.exp.results), ", ")))
		case m.Name == "job" && c.job != "" && m.Type == labels.MatchEqual && m.Value != c.job:
			errs = append(errs, fmt.Errorf("%s: the job is %q, the operator's metrics Service", vs, c.job))
		}
	}
	return errs
}

// checkAvailable reports the labels that no series under the nodes has; nothing when a series
// there has labels it does not know.
func (c *checker) checkAvailable(want []string, what string, nodes ...parser.Node) []error {
	if len(want) == 0 {
		return nil
	}
	have := map[string]bool{}
	for l := range targetLabels {
		have[l] = true
	}
	unknown := false
	for _, node := range nodes {
		parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			names, err := c.selected(vs)
			if err != nil {
				unknown = true // reported by checkSelector
				return nil
			}
			for _, name := range names {
				info, _ := c.exp.lookup(name)
				if info.labels == nil {
					unknown = true
				}
				for l := range info.labels {
					have[l] = true
				}
			}
			return nil
		})
	}
	if unknown {
		return nil
	}
	var errs []error
	for _, l := range want {
		if !have[l] {
			errs = append(errs, fmt.Errorf("%s (%s): no series in scope has the label %q", what, strings.Join(want, ", "), l))
		}
	}
	return errs
}

func matchesAny(m *labels.Matcher, values map[string]bool) bool {
	for v := range values {
		if m.Matches(v) {
			return true
		}
	}
	return false
}
