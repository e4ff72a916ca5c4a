package httpapi_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

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
