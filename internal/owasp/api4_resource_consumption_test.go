// API4:2023 Unrestricted Resource Consumption.
//
// For Parlor the resources are requests (each costs a database round trip, some an argon2id
// hash or a payment-provider call), request sizes, page sizes and long-polls. Unrestricted
// would be a client that can loop without being told to slow down, send a body or a field
// of any size, or ask for a page of any length.
//
// This file proves the limits hold and are documented: TestRequestRateLimits drives each
// class of request (sync, reads, writes, unauthenticated) over its APP_RATE_* budget to a
// 429 with Retry-After that changed nothing; TestEveryLimitedOperationDocumentsItsLimit
// walks the contract — every operation but the probes, the key set, the signed webhook and
// the socket upgrade declares its 429 with a Retry-After header;
// TestEveryRequestBodyIsBounded sends every operation with a body one over
// APP_BODY_LIMIT (413, nothing written); TestEveryInputIsBoundedInTheContract requires a
// maxLength on every string and a maxItems on every array a client sends, and a maximum on
// every page size, which the server enforces (400). (Sign-in and sign-up throttles are
// API2's and API6's; over-long socket frames close 1009 and slow sockets are dropped in
// internal/realtime's TestGatewayLimitsAndCloseCodes; the long-poll's timeout_ms is bounded
// by the contract, checked here.)
package owasp_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/gommon/bytes"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// requireRateLimited checks a 429 as the contract describes it: rate_limited, with a
// Retry-After in whole seconds within the window.
func requireRateLimited(t *testing.T, res *http.Response, body []byte, window time.Duration) {
	t.Helper()
	parlortest.RequireProblem(t, res, body, http.StatusTooManyRequests, "rate_limited")
	retry, err := strconv.Atoi(res.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", res.Header.Get("Retry-After"))
	require.True(t, retry >= 1 && retry <= int(window.Seconds()), "Retry-After = %d", retry)
}

// Issue 12, hole 5: a client polling in a tight loop (sync, a top-up's status) is told to
// slow down with 429 and Retry-After, per user and per class of endpoint, and what it was
// refused changed nothing.
func TestRequestRateLimits(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	cfg.RateSync = config.Rate{N: 3, Window: time.Minute}
	cfg.RateRead = config.Rate{N: 5, Window: time.Minute}
	cfg.RateWrite = config.Rate{N: 2, Window: time.Minute}
	cfg.RatePublic = config.Rate{N: 4, Window: time.Minute}
	s := parlortest.Start(t, cfg)
	ann, bob := s.Register(t, "ann"), s.Register(t, "bob")

	t.Run("sync polled in a loop", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			res, err := ann.Client.SyncWithResponse(ctx, &apiclient.SyncParams{})
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, res.StatusCode(), string(res.Body))
		}
		res, err := ann.Client.SyncWithResponse(ctx, &apiclient.SyncParams{})
		require.NoError(t, err)
		requireRateLimited(t, res.HTTPResponse, res.Body, time.Minute)

		// Sync has its own budget: Ann's other reads, and Bob's sync, are not held back.
		me, err := ann.Client.GetMeWithResponse(ctx)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, me.StatusCode())
		other, err := bob.Client.SyncWithResponse(ctx, &apiclient.SyncParams{})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, other.StatusCode())
	})

	t.Run("a top-up's status polled in a loop", func(t *testing.T) {
		cat := s.Register(t, "cat")
		topup, err := cat.Client.CreateTopupWithResponse(ctx, &apiclient.CreateTopupParams{IdempotencyKey: "poll-1"},
			apiclient.CreateTopupJSONRequestBody{PackageId: "small"})
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, topup.StatusCode(), string(topup.Body))
		var last *apiclient.GetTopupResponse
		for i := 0; i < 6; i++ {
			last, err = cat.Client.GetTopupWithResponse(ctx, topup.JSON201.Id)
			require.NoError(t, err)
			if i < 5 {
				require.Equal(t, http.StatusOK, last.StatusCode(), "read %d: %s", i+1, last.Body)
			}
		}
		requireRateLimited(t, last.HTTPResponse, last.Body, time.Minute)
	})

	t.Run("a refused write changes nothing", func(t *testing.T) {
		dan := s.Register(t, "dan")
		for i := 0; i < 2; i++ {
			res, err := dan.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "room " + strconv.Itoa(i)})
			require.NoError(t, err)
			require.Equal(t, http.StatusCreated, res.StatusCode(), string(res.Body))
		}
		res, err := dan.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "one too many"})
		require.NoError(t, err)
		requireRateLimited(t, res.HTTPResponse, res.Body, time.Minute)
		require.Equal(t, 2, s.Count(t, "SELECT count(*) FROM rooms WHERE owner_id = $1", dan.ID))
		// Writes and reads are counted apart.
		list, err := dan.Client.ListRoomsWithResponse(ctx, &apiclient.ListRoomsParams{})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, list.StatusCode(), string(list.Body))
	})

	t.Run("requests without a token are counted per client IP", func(t *testing.T) {
		// The four registrations above used this IP's public budget; probes are not counted.
		for i := 0; i < 10; i++ {
			res, _ := s.Do(t, http.MethodGet, "/healthz", "", nil, nil)
			require.Equal(t, http.StatusOK, res.StatusCode)
		}
		res, err := s.Client.RefreshWithResponse(ctx, apiclient.RefreshJSONRequestBody{RefreshToken: "not-a-token"})
		require.NoError(t, err)
		requireRateLimited(t, res.HTTPResponse, res.Body, time.Minute)
		// A signed-in user from the same address has a budget of their own.
		me, err := ann.Client.GetMeWithResponse(ctx)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, me.StatusCode())
	})
}

// unlimited are the operations that take no part in the request budgets (README,
// APP_RATE_PUBLIC): probes, the key set, the signed Stripe webhook and the socket upgrade
// (whose ticket is single-use and itself rate limited).
var unlimited = map[string]bool{
	"GET /healthz": true, "GET /readyz": true, "GET /.well-known/jwks.json": true,
	"POST /v1/webhooks/stripe": true, "GET /v1/realtime": true,
}

func TestEveryLimitedOperationDocumentsItsLimit(t *testing.T) {
	t.Parallel()
	for _, op := range contractOperations(t) {
		res := op.op.Responses.Value("429")
		if unlimited[op.key()] {
			require.Nil(t, res, "%s is not rate limited, yet declares a 429", op.key())
			continue
		}
		require.NotNil(t, res, "%s declares no 429: its limit is undocumented", op.key())
		require.NotNil(t, res.Value.Headers["Retry-After"], "%s: the 429 declares no Retry-After", op.key())
		require.NotEmpty(t, res.Value.Description)
	}
}

func TestEveryRequestBodyIsBounded(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	u := s.Register(t, "big")
	limit, err := bytes.Parse(s.Config.BodyLimit) // as echo reads APP_BODY_LIMIT
	require.NoError(t, err)
	tables := []string{"users", "rooms", "messages", "topups", "tips", "payment_events", "room_events"}
	counts := map[string]int{}
	for _, table := range tables {
		counts[table] = s.Count(t, "SELECT count(*) FROM "+table)
	}
	bodies := 0
	for _, op := range contractOperations(t) {
		if op.op.RequestBody == nil {
			continue
		}
		bodies++
		t.Run(op.key(), func(t *testing.T) {
			n := int(limit)
			if op.path == "/v1/webhooks/stripe" {
				n = 256 << 10 // Stripe's events have a bound of their own, in place of APP_BODY_LIMIT
			}
			big := `{"name":"` + strings.Repeat("x", n) + `"}`
			res, body := s.As(t, u, op.method, op.concretePath(), big)
			parlortest.RequireProblem(t, res, body, http.StatusRequestEntityTooLarge, "payload_too_large")
		})
	}
	require.Positive(t, bodies)
	for table, n := range counts {
		require.Equal(t, n, s.Count(t, "SELECT count(*) FROM "+table), "an oversized body wrote to %s", table)
	}
}

func TestEveryInputIsBoundedInTheContract(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	u := s.Register(t, "pages")
	bounded := 0 // strings and arrays checked, so the walk cannot pass by seeing nothing
	check := func(where string, r *openapi3.SchemaRef) {
		sch := r.Value
		if sch.Type.Is("string") || sch.Type.Is("array") {
			bounded++
		}
		switch {
		case sch.Type.Is("string") && len(sch.Enum) == 0 && sch.Format != "uuid" && sch.Format != "date-time":
			require.NotNil(t, sch.MaxLength, "%s: a string without maxLength", where)
		case sch.Type.Is("array"):
			require.NotNil(t, sch.MaxItems, "%s: an array without maxItems", where)
		}
	}
	pages := 0
	for _, op := range contractOperations(t) {
		for _, ps := range []openapi3.Parameters{op.item.Parameters, op.op.Parameters} {
			for _, p := range ps {
				walkSchemas(p.Value.Schema, op.key()+" "+p.Value.In+"."+p.Value.Name, check)
				if p.Value.In != openapi3.ParameterInQuery || (p.Value.Name != "limit" && p.Value.Name != "timeout_ms") {
					continue
				}
				max := p.Value.Schema.Value.Max
				require.NotNil(t, max, "%s: %s has no maximum", op.key(), p.Value.Name)
				pages++
				res, body := s.As(t, u, op.method, op.concretePath()+"?"+p.Value.Name+"="+strconv.FormatInt(int64(*max)+1, 10), "")
				p := parlortest.RequireProblem(t, res, body, http.StatusBadRequest, "invalid_request")
				require.NotEmpty(t, parlortest.ProblemFields(p), string(body))
			}
		}
		if op.op.RequestBody != nil && op.path != "/v1/webhooks/stripe" {
			for mime, media := range op.op.RequestBody.Value.Content {
				walkSchemas(media.Schema, op.key()+" "+mime, check)
			}
		}
	}
	require.Positive(t, pages)
	require.Greater(t, bounded, 30)
}
