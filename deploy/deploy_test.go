// Package deploy_test checks the operator's files in deploy/: the Prometheus alert rules
// (promtool accepts them and their unit tests pass) and the Grafana dashboard, and that
// every metric they name is one Parlor exports.
package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// promtool is found on PATH or in bin/ at the repository's root, where `go tool task
// promtool` (a dependency of `go tool task test`) puts it.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	p, err := filepath.Abs(filepath.Join("..", "bin", "promtool"))
	require.NoError(t, err)
	if _, err := os.Stat(p); err != nil {
		t.Skip("promtool is not installed: go tool task promtool puts it in bin/")
	}
	return p
}

func TestAlertRulesPassPromtool(t *testing.T) {
	t.Parallel()
	tool := promtool(t)
	out, err := exec.Command(tool, "check", "rules", "prometheus/alerts.yml").CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)
	test := exec.Command(tool, "test", "rules", "alerts_test.yml")
	test.Dir = "prometheus"
	out, err = test.CombinedOutput()
	require.NoError(t, err, "promtool test rules:\n%s", out)
	require.Contains(t, string(out), "SUCCESS")
}

var metricName = regexp.MustCompile(`\bparlor_[a-z0-9_]+`)

// exported returns the names of the metrics Parlor defines: the literal names in its Go
// source, and those a running instance serves (some are built from a prefix).
func exported(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, dir := range []string{"../internal", "../cmd"} {
		require.NoError(t, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range regexp.MustCompile(`"(parlor_[a-z0-9_]+)"`).FindAllStringSubmatch(string(src), -1) {
				names = append(names, m[1])
			}
			return nil
		}))
	}
	s := parlortest.Start(t, parlortest.Config(t))
	res, body := s.Scrape(t)
	require.Equal(t, http.StatusOK, res.StatusCode)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names = append(names, strings.Fields(rest)[0])
		}
	}
	return names
}

// known reports whether name (a series name, perhaps a histogram's _bucket, _sum or _count)
// is an exported metric.
func known(names []string, name string) bool {
	if slices.Contains(names, name) {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(names, base) {
			return true
		}
	}
	return false
}

func TestAlertsAndDashboardNameOnlyExportedMetrics(t *testing.T) {
	t.Parallel()
	names := exported(t)

	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	raw, err := os.ReadFile("prometheus/alerts.yml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &rules))
	exprs := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs["alert "+r.Alert] = r.Expr
		}
	}

	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	raw, err = os.ReadFile("grafana/parlor.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &dash))
	require.Equal(t, "Parlor", dash.Title)
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q queries something", p.Title)
		for i, tg := range p.Targets {
			exprs["panel "+p.Title+" #"+string(rune('A'+i))] = tg.Expr
		}
	}
	require.GreaterOrEqual(t, len(exprs), 20)
	for where, expr := range exprs {
		used := metricName.FindAllString(expr, -1)
		require.NotEmpty(t, used, "%s queries a Parlor metric", where)
		for _, name := range used {
			require.True(t, known(names, name), "%s names %s, which Parlor does not export", where, name)
		}
	}
}

// TestTheDockerfileBuildsWithGoModsToolchainOffline: the image's Go is the one go.mod asks
// for, and the build may not fetch another (GOTOOLCHAIN=auto downloads a toolchain during
// the build when the image is older than go.mod); the module cache mount is where the
// golang image keeps modules (GOPATH=/go), or every build downloads them again.
func TestTheDockerfileBuildsWithGoModsToolchainOffline(t *testing.T) {
	t.Parallel()
	goMod, err := os.ReadFile("../go.mod")
	require.NoError(t, err)
	want := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(goMod)
	require.NotNil(t, want, "go.mod has a go line")
	if tc := regexp.MustCompile(`(?m)^toolchain go(\S+)$`).FindSubmatch(goMod); tc != nil {
		want = tc
	}
	raw, err := os.ReadFile("../Dockerfile")
	require.NoError(t, err)
	dockerfile := string(raw)

	arg := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`).FindStringSubmatch(dockerfile)
	require.NotNil(t, arg, "the Dockerfile has ARG GO_VERSION")
	require.Equal(t, string(want[1]), arg[1], "ARG GO_VERSION must be go.mod's Go version")
	require.Contains(t, dockerfile, "FROM golang:${GO_VERSION}-")
	require.Regexp(t, `(?m)^ENV GOTOOLCHAIN=local$`, dockerfile, "the build must not download a toolchain")
	require.NotContains(t, dockerfile, "GOTOOLCHAIN=auto")
	mounts := regexp.MustCompile(`--mount=type=cache,target=(\S+)`).FindAllStringSubmatch(dockerfile, -1)
	require.NotEmpty(t, mounts)
	for _, m := range mounts {
		require.Contains(t, []string{"/go/pkg/mod", "/root/.cache/go-build"}, m[1],
			"cache mounts are where the golang image keeps modules (GOPATH=/go) and builds")
	}
}

// k8sObject is the part of a Kubernetes manifest the checks below read.
type k8sObject struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Replicas int `yaml:"replicas"`
		Template struct {
			Spec struct {
				TerminationGracePeriodSeconds int            `yaml:"terminationGracePeriodSeconds"`
				InitContainers                []k8sContainer `yaml:"initContainers"`
				Containers                    []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string         `yaml:"name"`
		Value     *string        `yaml:"value"`
		ValueFrom map[string]any `yaml:"valueFrom"`
	} `yaml:"env"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

// configVariables are the names of every variable config.Config reads.
func configVariables() map[string]bool {
	out := map[string]bool{}
	typ := reflect.TypeFor[config.Config]()
	for i := range typ.NumField() {
		if name, _, _ := strings.Cut(typ.Field(i).Tag.Get("env"), ","); name != "" {
			out[name] = true
		}
	}
	return out
}

// TestTheKubernetesManifestFitsParlorsSettings: the Deployment sets only variables Parlor
// reads, runs more than one instance only with Redis, probes readiness and liveness where
// they are served, notices the drain before it ends, and is killed only after the drain and
// the shutdown timeout have both run out.
func TestTheKubernetesManifestFitsParlorsSettings(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("kubernetes/parlor.yaml")
	require.NoError(t, err)
	var deployment *k8sObject
	kinds := []string{}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var obj k8sObject
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			break
		} else {
			require.NoError(t, err)
		}
		kinds = append(kinds, obj.Kind)
		if obj.Kind == "Deployment" {
			deployment = &obj
		}
	}
	require.Equal(t, []string{"Deployment", "Service", "PodDisruptionBudget"}, kinds)
	require.NotNil(t, deployment)
	pod := deployment.Spec.Template.Spec
	known := configVariables()
	env := map[string]string{}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		for _, e := range c.Env {
			require.True(t, known[e.Name], "%s sets %s, which Parlor does not read", c.Name, e.Name)
			if c.Name == "parlor" && e.Value != nil {
				env[e.Name] = *e.Value
			} else if c.Name == "parlor" {
				env[e.Name] = "(secret)"
			}
		}
	}
	require.Len(t, pod.InitContainers, 1)
	require.Equal(t, []string{"migrate", "up"}, pod.InitContainers[0].Args, "production migrates once per rollout, not on start")
	require.Len(t, pod.Containers, 1)
	app := pod.Containers[0]
	require.Equal(t, []string{"serve"}, app.Args)
	require.Equal(t, pod.InitContainers[0].Image, app.Image)

	require.Equal(t, config.Production, env["APP_ENV"])
	require.True(t, strings.HasPrefix(env["APP_PUBLIC_URL"], "https://"))
	require.Equal(t, "(secret)", env["APP_JWT_KEYS"])
	if deployment.Spec.Replicas > 1 {
		require.Equal(t, "(secret)", env["REDIS_URL"], "several instances fan out through Redis")
		require.NotEqual(t, "true", env["APP_SINGLE_INSTANCE"])
	}

	ports := map[string]int{}
	for _, p := range app.Ports {
		ports[p.Name] = p.ContainerPort
	}
	portOf := func(addr string) int {
		_, port, err := net.SplitHostPort(addr)
		require.NoError(t, err, addr)
		n, err := strconv.Atoi(port)
		require.NoError(t, err, addr)
		return n
	}
	require.Equal(t, portOf(env["APP_ADDR"]), ports["http"])
	require.Equal(t, portOf(env["APP_METRICS_ADDR"]), ports["metrics"])
	require.NotNil(t, app.ReadinessProbe)
	require.NotNil(t, app.LivenessProbe)
	require.Equal(t, "/readyz", app.ReadinessProbe.HTTPGet.Path)
	require.Equal(t, "http", app.ReadinessProbe.HTTPGet.Port)
	require.Equal(t, "/healthz", app.LivenessProbe.HTTPGet.Path, "liveness never depends on the stores")
	require.Equal(t, "http", app.LivenessProbe.HTTPGet.Port)

	drain, err := time.ParseDuration(env["APP_SHUTDOWN_DRAIN"])
	require.NoError(t, err)
	timeout, err := time.ParseDuration(env["APP_SHUTDOWN_TIMEOUT"])
	require.NoError(t, err)
	noticed := time.Duration(app.ReadinessProbe.PeriodSeconds*max(app.ReadinessProbe.FailureThreshold, 1)) * time.Second
	require.Less(t, noticed, drain, "readiness must notice the drain before it ends")
	require.Greater(t, time.Duration(pod.TerminationGracePeriodSeconds)*time.Second, drain+timeout,
		"the kill must come after the drain and the shutdown timeout")
}
