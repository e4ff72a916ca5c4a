// API9:2023 Improper Inventory Management.
//
// For Parlor the inventory is api/openapi.yaml: it is the published description of every
// endpoint, the generated clients are built from it, and every request it describes goes
// through its validator. An endpoint served but missing from the contract escapes the
// validator, the docs and every suite driven from the contract (this one included); an
// operation in the contract but not served is a promise broken to partners; an operation
// of the published contract that disappeared breaks the clients already shipped.
//
// This file proves the inventory is exact: TestEveryServedRouteIsInTheContractOrDocumented
// reads every route echo serves (in development and in production) and requires it to be
// an operation of the contract or one of the documented non-API routes;
// TestEveryContractOperationIsServed routes a request for each operation through the
// server's own router and over HTTP; TestThePublishedContractIsStillServed holds the
// contract to api/published/openapi.yaml. (That /openapi.yaml serves the contract byte for
// byte is internal/httpapi's TestContractAndDocsAreServed.)
package owasp_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	parlor "github.com/parlor-dev/parlor"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// contractOperation is one operation of api/openapi.yaml.
type contractOperation struct {
	method, path string // "POST", "/v1/rooms/{room_id}/join"
	op           *openapi3.Operation
	item         *openapi3.PathItem
}

func (o contractOperation) key() string { return o.method + " " + o.path }

// params are the names of the operation's parameters in in (the path item's and its own).
func (o contractOperation) params(in string) []string {
	var names []string
	for _, ps := range []openapi3.Parameters{o.item.Parameters, o.op.Parameters} {
		for _, p := range ps {
			if p.Value != nil && p.Value.In == in {
				names = append(names, p.Value.Name)
			}
		}
	}
	return names
}

// public reports whether the operation needs no bearer token.
func (o contractOperation) public() bool { return o.op.Security != nil && len(*o.op.Security) == 0 }

// echoPath is the operation's path as an echo route ("/v1/rooms/:room_id/join").
func (o contractOperation) echoPath() string {
	return regexp.MustCompile(`\{([^}]+)\}`).ReplaceAllString(o.path, ":$1")
}

// concretePath fills the path's parameters with values of their schemas' shape.
func (o contractOperation) concretePath() string {
	return regexp.MustCompile(`\{([^}]+)\}`).ReplaceAllStringFunc(o.path, func(string) string {
		return "00000000-0000-4000-8000-000000000000"
	})
}

// contractOperations walks every operation of api/openapi.yaml as the binary serves it
// (not gen/api's embedded copy, which leaves out the operations served by hand: the socket
// upgrade and the Stripe webhook), sorted.
func contractOperations(t testing.TB) []contractOperation {
	t.Helper()
	spec, err := openapi3.NewLoader().LoadFromData(parlor.OpenAPIYAML)
	require.NoError(t, err)
	return operationsOf(spec)
}

func operationsOf(spec *openapi3.T) []contractOperation {
	var ops []contractOperation
	for path, item := range spec.Paths.Map() {
		for method, op := range item.Operations() {
			ops = append(ops, contractOperation{method: method, path: path, op: op, item: item})
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].key() < ops[j].key() })
	return ops
}

// nonAPIRoutes are the routes served outside the contract, each documented in the README's
// "Operating it" (the contract, the docs page, the demo client) or, in development only,
// the sandbox's checkout page (DESIGN.md, "Payments model").
var nonAPIRoutes = map[string]bool{
	"GET /":              true,
	"GET /openapi.yaml":  true,
	"GET /openapi.json":  true,
	"GET /asyncapi.yaml": true,
	"GET /docs":          true,
	"GET /docs/*":        true,
	"GET /demo/*":        true,
}

var sandboxRoutes = map[string]bool{
	"GET /sandbox/checkout/:id":                   true,
	"POST /sandbox/checkout/:id/pay":              true,
	"POST /sandbox/checkout/:id/pay-delayed-fail": true,
	"POST /sandbox/checkout/:id/cancel":           true,
}

// TestEveryServedRouteIsInTheContractOrDocumented reads the routes echo serves: each is an
// operation of the contract or a documented non-API route, every documented one is served,
// and production serves no sandbox page.
func TestEveryServedRouteIsInTheContractOrDocumented(t *testing.T) {
	t.Parallel()
	inContract := map[string]bool{}
	for _, op := range contractOperations(t) {
		inContract[op.method+" "+op.echoPath()] = true
	}
	prod := parlortest.Config(t)
	prod.Env, prod.PublicURL = "production", "https://parlor.example"
	for name, s := range map[string]*parlortest.Server{
		"development": parlortest.New(t),
		"production":  parlortest.Start(t, prod),
	} {
		t.Run(name, func(t *testing.T) {
			served := map[string]bool{}
			for _, r := range s.Echo.Routes() {
				if r.Method == echo.RouteNotFound {
					continue // echo's own fallback, answering 404 for what matches nothing
				}
				key := r.Method + " " + r.Path
				served[key] = true
				switch {
				case inContract[key], nonAPIRoutes[key]:
				case sandboxRoutes[key]:
					require.Equal(t, "development", name, "%s is served in production", key)
				default:
					t.Errorf("%s is served but is neither an operation of the contract nor a documented route", key)
				}
			}
			for key := range inContract {
				require.True(t, served[key], "the contract's %s is not served", key)
			}
			for key := range nonAPIRoutes {
				require.True(t, served[key], "the documented %s is not served", key)
			}
			if name == "development" {
				for key := range sandboxRoutes {
					require.True(t, served[key], "the sandbox's %s is not served", key)
				}
			}
		})
	}
}

// TestEveryContractOperationIsServed routes a request for each operation of the contract:
// the server's router finds that very operation (no catch-all or other route shadows it),
// and over HTTP the answer is not a 405 nor a 404 for an unknown route.
func TestEveryContractOperationIsServed(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	u := s.Register(t, "inventory")
	_, unrouted := s.Do(t, http.MethodGet, "/v1/no-such-route", "", nil, nil)
	for _, op := range contractOperations(t) {
		t.Run(op.key(), func(t *testing.T) {
			path := op.concretePath()
			c := s.Echo.NewContext(httptest.NewRequest(op.method, path, nil), httptest.NewRecorder())
			s.Echo.Router().Find(op.method, path, c)
			require.Equal(t, op.echoPath(), c.Path(), "%s %s is routed elsewhere", op.method, path)

			res, body := s.As(t, u, op.method, path, "")
			require.NotEqual(t, http.StatusMethodNotAllowed, res.StatusCode, string(body))
			if res.StatusCode == http.StatusNotFound {
				require.NotEqual(t, strings.TrimSpace(problemDetail(t, unrouted)), strings.TrimSpace(problemDetail(t, body)),
					"%s %s answers as an unknown route", op.method, path)
			}
		})
	}
}

// TestThePublishedContractIsStillServed: every operation of the contract clients have
// (api/published/openapi.yaml) is still in the contract, so still served (above).
func TestThePublishedContractIsStillServed(t *testing.T) {
	t.Parallel()
	published, err := openapi3.NewLoader().LoadFromFile("../../api/published/openapi.yaml")
	require.NoError(t, err)
	current := map[string]bool{}
	for _, op := range contractOperations(t) {
		current[op.key()] = true
	}
	ops := operationsOf(published)
	require.NotEmpty(t, ops)
	for _, op := range ops {
		require.True(t, current[op.key()], "the published %s is gone from the contract", op.key())
	}
}

// problemDetail is the detail of a problem body ("" when it has none).
func problemDetail(t testing.TB, body []byte) string {
	t.Helper()
	var p struct {
		Detail string `json:"detail"`
	}
	require.NoError(t, json.Unmarshal(body, &p), string(body))
	return p.Detail
}
