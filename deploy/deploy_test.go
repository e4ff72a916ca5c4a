// Package deploy_test checks the operator's files in deploy/: the Prometheus alert rules
// (promtool accepts them and their unit tests pass) and the Grafana dashboard, and that
// every metric they name is one Parlor exports.
package deploy_test

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

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
