package monitoring

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// dashboardDatasource is how every panel and query names its data source: the dashboard's
// variable, so that the dashboard works with whatever Prometheus data source Grafana has.
const dashboardDatasource = "${datasource}"

// grafanaVariable matches $name, ${name}, ${name:format} and [[name]].
var grafanaVariable = regexp.MustCompile(`\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)\]\]`)

// labelValues is the one form of variable query the dashboard uses.
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

type panel struct {
	ID         int           `json:"id"`
	Type       string        `json:"type"`
	Title      string        `json:"title"`
	Datasource *datasource   `json:"datasource"`
	Targets    []panelTarget `json:"targets"`
	Panels     []panel       `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panelTarget struct {
	RefID      string      `json:"refId"`
	Expr       string      `json:"expr"`
	Datasource *datasource `json:"datasource"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Datasource *datasource     `json:"datasource"`
}

type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(monitoringDir, "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	return d
}

// placeholders maps the dashboard's variables and Grafana's built-in ones to values that make
// a query valid PromQL: a duration for intervals, a label value for the rest.
func placeholders(d dashboard) map[string]string {
	vars := map[string]string{"__rate_interval": "5m", "__interval": "1m", "__range": "1d"}
	for _, v := range d.Templating.List {
		if v.Type == "interval" {
			vars[v.Name] = "1h"
		} else {
			vars[v.Name] = "placeholder"
		}
	}
	return vars
}

func substitute(expr string, vars map[string]string) (string, error) {
	var unknown []string
	out := grafanaVariable.ReplaceAllStringFunc(expr, func(m string) string {
		g := grafanaVariable.FindStringSubmatch(m)
		name := g[1] + g[2] + g[3]
		v, ok := vars[name]
		if !ok {
			unknown = append(unknown, name)
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown variable(s) %s", strings.Join(unknown, ", "))
	}
	return out, nil
}

func TestDashboardQueriesUseOnlyWhatTheOperatorExposes(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard needs a uid and a title, so that links and provisioning find it")
	}
	c := newChecker(loadExposition(t))
	vars := placeholders(d)
	checkExpr := func(where, expr string) {
		expanded, err := substitute(expr, vars)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		for _, err := range c.check(expanded) {
			t.Errorf("%s: %v", where, err)
		}
	}

	hasDatasourceVariable := false
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			hasDatasourceVariable = hasDatasourceVariable || (v.Name == "datasource" && string(v.Query) == `"prometheus"`)
		case "query":
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Errorf("variable %s: query: %v", v.Name, err)
				continue
			}
			if q.Query != v.Definition {
				t.Errorf("variable %s: definition %q differs from the query %q", v.Name, v.Definition, q.Query)
			}
			if v.Datasource == nil || v.Datasource.UID != dashboardDatasource {
				t.Errorf("variable %s: data source %v, want %s", v.Name, v.Datasource, dashboardDatasource)
			}
			m := labelValues.FindStringSubmatch(q.Query)
			if m == nil {
				t.Errorf("variable %s: %q is not label_values(selector, label)", v.Name, q.Query)
				continue
			}
			// The label must be one the selected series have.
			checkExpr("variable "+v.Name, fmt.Sprintf("count by (%s) (%s)", m[2], m[1]))
		}
	}
	if !hasDatasourceVariable {
		t.Error(`the dashboard has no Prometheus data source variable "datasource"`)
	}

	ids := map[int]string{}
	var walk func([]panel)
	queries := 0
	walk = func(panels []panel) {
		for _, p := range panels {
			where := fmt.Sprintf("panel %q", p.Title)
			if other, ok := ids[p.ID]; ok {
				t.Errorf("%s: id %d is also %q's", where, p.ID, other)
			}
			ids[p.ID] = p.Title
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != dashboardDatasource {
				t.Errorf("%s: data source %v, want %s", where, p.Datasource, dashboardDatasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no queries", where)
			}
			for _, q := range p.Targets {
				if q.Datasource == nil || q.Datasource.UID != dashboardDatasource {
					t.Errorf("%s, query %s: data source %v, want %s", where, q.RefID, q.Datasource, dashboardDatasource)
				}
				if strings.TrimSpace(q.Expr) == "" {
					t.Errorf("%s, query %s: no expression", where, q.RefID)
					continue
				}
				queries++
				checkExpr(fmt.Sprintf("%s, query %s", where, q.RefID), q.Expr)
			}
		}
	}
	walk(d.Panels)
	if queries == 0 {
		t.Fatal("the dashboard has no queries")
	}
}

// The checks above must fail on what they are meant to catch.
func TestCheckerCatchesMistakes(t *testing.T) {
	c := newChecker(loadExposition(t))
	c.job = jobName
	vars := map[string]string{"namespace": "placeholder", "__rate_interval": "5m"}
	for _, tc := range []struct{ expr, want string }{
		{`backup_operator_backup_total`, "exposes no metric"},
		{`sum by (policy) (backup_operator_restores_total)`, `no series in scope has the label "policy"`},
		{`backup_operator_backups_total{result="Failed"}`, "matches no result"},
		{`backup_operator_backups_total{polciy="daily"}`, `has no label "polciy"`},
		{`workqueue_depth{queue="backup"}`, `has no label "queue"`},
		{`backup_operator_schedule_skew_seconds_bucket{le="1", namespace="db"} unless on (name) workqueue_depth`, ""},
		{`up unless on (polcy) backup_operator_backups_total`, `no series in scope has the label "polcy"`},
		{`up{job="backup-controller"}`, "the operator's metrics Service"},
		{`{__name__=~"backup_operator_nothing_.*"}`, "matches no metric"},
		{`rate(backup_operator_backups_total[5m]`, "unclosed"},
		{`rate(backup_operator_backups_total{namespace=~"$namespace"}[$__rate_interval])`, ""},
		{`rate(backup_operator_backups_total{namespace=~"$nmespace"}[5m])`, "unknown variable(s) nmespace"},
	} {
		var errs []string
		expanded, err := substitute(tc.expr, vars)
		if err != nil {
			errs = append(errs, err.Error())
		} else {
			for _, err := range c.check(expanded) {
				errs = append(errs, err.Error())
			}
		}
		got := strings.Join(errs, "; ")
		if tc.want == "" && got != "" {
			t.Errorf("%s: unexpected %s", tc.expr, got)
		}
		if tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: got %q, want an error containing %q", tc.expr, got, tc.want)
		}
	}
}

func TestKustomizationInstallsEverything(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(monitoringDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources          []string `yaml:"resources"`
		ConfigMapGenerator []struct {
			Files   []string `yaml:"files"`
			Options struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"options"`
		} `yaml:"configMapGenerator"`
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, r := range k.Resources {
		listed[r] = true
	}
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.Files {
			_, file, _ := strings.Cut(f, "=")
			if file == "" {
				file = f
			}
			listed[file] = true
			if file == "dashboard.json" && g.Options.Labels["grafana_dashboard"] != "1" {
				t.Error(`the dashboard's ConfigMap lacks the label grafana_dashboard: "1" that Grafana's sidecar looks for`)
			}
		}
	}
	entries, err := os.ReadDir(monitoringDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch name := e.Name(); {
		case name == "kustomization.yaml" || name == "README.md" || e.IsDir():
		case !listed[name]:
			t.Errorf("kustomization.yaml does not install %s", name)
		}
	}

	// The alerts read the namespace label as the namespace of the policy, Backup or Restore.
	raw, err = os.ReadFile(filepath.Join(monitoringDir, "servicemonitor.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var sm struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Endpoints []struct {
				Port        string `yaml:"port"`
				HonorLabels bool   `yaml:"honorLabels"`
			} `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &sm); err != nil {
		t.Fatal(err)
	}
	if sm.Kind != "ServiceMonitor" || len(sm.Spec.Endpoints) != 1 || !sm.Spec.Endpoints[0].HonorLabels || sm.Spec.Endpoints[0].Port != "http" {
		t.Errorf("servicemonitor.yaml: want one endpoint on port http with honorLabels: true, got %+v", sm)
	}
}
