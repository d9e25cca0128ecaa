package monitoring

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// targetLabels are the labels the Prometheus Operator puts on every series of a ServiceMonitor's
// targets. The operator's own namespace label takes precedence (honorLabels).
var targetLabels = set("job", "instance", "namespace", "pod", "service", "endpoint", "container")

// scrapeSeries are the series Prometheus itself makes for each target.
var scrapeSeries = map[string]metric{"up": {labels: set()}}

// metric is one series name the operator exposes.
type metric struct {
	// labels besides the target labels; nil when the source does not say (the Go and process
	// collectors).
	labels map[string]bool
}

// exposition is what pkg/metrics exposes, as its source declares it.
type exposition struct {
	// metrics by series name: a histogram as its _bucket, _sum and _count series.
	metrics map[string]metric
	// families are the declared names, a histogram's without suffix, for the README check.
	families []string
	// prefixes name the collectors registered whole, such as go_ and process_.
	prefixes []string
	// results are the values of the result label: the Result* constants.
	results map[string]bool
}

// lookup returns what is known about a series name.
func (e *exposition) lookup(name string) (metric, bool) {
	if m, ok := e.metrics[name]; ok {
		return m, true
	}
	if m, ok := scrapeSeries[name]; ok {
		return m, true
	}
	for _, p := range e.prefixes {
		if strings.HasPrefix(name, p) {
			return metric{}, true
		}
	}
	return metric{}, false
}

// names lists every series name with known labels, for selectors by a __name__ matcher.
func (e *exposition) names() []string {
	var out []string
	for n := range e.metrics {
		out = append(out, n)
	}
	for n := range scrapeSeries {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// readExposition reads the metric declarations of a Go package: every prometheus.*Opts literal,
// its Namespace, Subsystem and Name (string literals, package constants, or the parameters of a
// helper closure, resolved at each call of the closure) and the label names passed beside it.
// A declaration it cannot resolve is an error, so that a metric is never silently missed.
func readExposition(dir string) (*exposition, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no Go source in %s", dir)
	}

	r := &reader{fset: fset, consts: map[string]string{}}
	for _, f := range files {
		r.collectConsts(f)
	}
	e := &exposition{metrics: map[string]metric{}, results: map[string]bool{}}
	for name, v := range r.consts {
		if strings.HasPrefix(name, "Result") {
			e.results[v] = true
		}
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "collectors" {
					switch sel.Sel.Name {
					case "NewGoCollector":
						e.prefixes = append(e.prefixes, "go_")
					case "NewProcessCollector":
						e.prefixes = append(e.prefixes, "process_")
					}
				}
			}
			return true
		})
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			if err := r.declarations(fn, e); err != nil {
				return nil, err
			}
		}
	}
	sort.Strings(e.families)
	return e, nil
}

type reader struct {
	fset   *token.FileSet
	consts map[string]string
}

func (r *reader) collectConsts(f *ast.File) {
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						if v, err := strconv.Unquote(lit.Value); err == nil {
							r.consts[name.Name] = v
						}
					}
				}
			}
		}
	}
}

// closure is a function literal assigned to a variable, such as
// gauge := func(name, help string) *prometheus.GaugeVec { ... }.
type closure struct {
	name   string
	params []string
}

// declarations adds the metrics declared in one function.
func (r *reader) declarations(fn *ast.FuncDecl, e *exposition) error {
	closures := map[*ast.FuncLit]closure{}
	calls := map[string][]*ast.CallExpr{}
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			if len(n.Lhs) == 1 && len(n.Rhs) == 1 {
				id, ok1 := n.Lhs[0].(*ast.Ident)
				lit, ok2 := n.Rhs[0].(*ast.FuncLit)
				if ok1 && ok2 {
					c := closure{name: id.Name}
					for _, field := range lit.Type.Params.List {
						for _, p := range field.Names {
							c.params = append(c.params, p.Name)
						}
					}
					closures[lit] = c
				}
			}
		case *ast.CallExpr:
			if id, ok := n.Fun.(*ast.Ident); ok {
				calls[id.Name] = append(calls[id.Name], n)
			}
		}
		return true
	})

	var err error
	var stack []ast.Node
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		if n == nil {
			stack = stack[:len(stack)-1]
			return true
		}
		stack = append(stack, n)
		lit, ok := n.(*ast.CompositeLit)
		if !ok || err != nil {
			return true
		}
		kind, ok := optsKind(lit.Type)
		if !ok {
			return true
		}
		// The bindings of the parameters the declaration may use: one per call of the
		// closure it is in, or none.
		bindings := []map[string]string{{}}
		for i := len(stack) - 1; i >= 0; i-- {
			fl, ok := stack[i].(*ast.FuncLit)
			if !ok {
				continue
			}
			c, ok := closures[fl]
			if !ok {
				break
			}
			bindings = nil
			for _, call := range calls[c.name] {
				b := map[string]string{}
				for j, p := range c.params {
					if j < len(call.Args) {
						if v, evalErr := r.eval(call.Args[j], nil); evalErr == nil {
							b[p] = v
						}
					}
				}
				bindings = append(bindings, b)
			}
			break
		}
		var labelArg ast.Expr
		if len(stack) >= 2 {
			if call, ok := stack[len(stack)-2].(*ast.CallExpr); ok && len(call.Args) > 1 && call.Args[0] == lit {
				labelArg = call.Args[1]
			}
		}
		for _, b := range bindings {
			if err = r.declare(lit, kind, labelArg, b, e); err != nil {
				return true
			}
		}
		return true
	})
	return err
}

// optsKind tells prometheus.CounterOpts, GaugeOpts, HistogramOpts and SummaryOpts apart.
func optsKind(t ast.Expr) (string, bool) {
	sel, ok := t.(*ast.SelectorExpr)
	if !ok {
		return "", false
	}
	if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" {
		return "", false
	}
	switch sel.Sel.Name {
	case "CounterOpts", "GaugeOpts", "HistogramOpts", "SummaryOpts":
		return strings.TrimSuffix(sel.Sel.Name, "Opts"), true
	}
	return "", false
}

func (r *reader) declare(lit *ast.CompositeLit, kind string, labelArg ast.Expr, binding map[string]string, e *exposition) error {
	parts := map[string]string{}
	for _, elt := range lit.Elts {
		kv, ok := elt.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		key, ok := kv.Key.(*ast.Ident)
		if !ok {
			continue
		}
		switch key.Name {
		case "Namespace", "Subsystem", "Name":
			v, err := r.eval(kv.Value, binding)
			if err != nil {
				return fmt.Errorf("%s: the %s of a metric: %w", r.fset.Position(kv.Pos()), key.Name, err)
			}
			parts[key.Name] = v
		}
	}
	var name []string
	for _, k := range []string{"Namespace", "Subsystem", "Name"} {
		if parts[k] != "" {
			name = append(name, parts[k])
		}
	}
	if parts["Name"] == "" {
		return fmt.Errorf("%s: a metric without a Name", r.fset.Position(lit.Pos()))
	}
	base := strings.Join(name, "_")

	labels := map[string]bool{}
	if labelArg != nil {
		list, ok := labelArg.(*ast.CompositeLit)
		if !ok {
			return fmt.Errorf("%s: the labels of %s are not a literal list", r.fset.Position(labelArg.Pos()), base)
		}
		for _, l := range list.Elts {
			v, err := r.eval(l, binding)
			if err != nil {
				return fmt.Errorf("%s: a label of %s: %w", r.fset.Position(l.Pos()), base, err)
			}
			labels[v] = true
		}
	}
	with := func(extra string) map[string]bool {
		out := map[string]bool{extra: true}
		for l := range labels {
			out[l] = true
		}
		return out
	}
	e.families = append(e.families, base)
	switch kind {
	case "Histogram":
		e.metrics[base+"_bucket"] = metric{labels: with("le")}
		e.metrics[base+"_sum"] = metric{labels: labels}
		e.metrics[base+"_count"] = metric{labels: labels}
	case "Summary":
		e.metrics[base] = metric{labels: with("quantile")}
		e.metrics[base+"_sum"] = metric{labels: labels}
		e.metrics[base+"_count"] = metric{labels: labels}
	default:
		e.metrics[base] = metric{labels: labels}
	}
	return nil
}

// eval resolves a string literal, a package constant or a bound closure parameter.
func (r *reader) eval(x ast.Expr, binding map[string]string) (string, error) {
	switch x := x.(type) {
	case *ast.BasicLit:
		if x.Kind == token.STRING {
			return strconv.Unquote(x.Value)
		}
	case *ast.Ident:
		if v, ok := binding[x.Name]; ok {
			return v, nil
		}
		if v, ok := r.consts[x.Name]; ok {
			return v, nil
		}
		return "", fmt.Errorf("%s is neither a constant nor a parameter bound to one", x.Name)
	}
	return "", fmt.Errorf("%s is not a string literal or constant", r.fset.Position(x.Pos()))
}

func set(items ...string) map[string]bool {
	out := make(map[string]bool, len(items))
	for _, i := range items {
		out[i] = true
	}
	return out
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
