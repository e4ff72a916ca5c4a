package faults_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// Issue 12, hole 6, for Redis: a request that needs Redis while it is down (sign-in counts
// attempts there) is a 503 `unavailable` problem with Retry-After, not a 500, and works again
// once Redis is back, without restarting Parlor. Requests that do not need it keep working.
func TestARedisOutageIsA503WhereARequestNeedsRedis(t *testing.T) {
	t.Parallel()
	rds := parlortest.StartRedis(t)
	cfg := parlortest.Config(t)
	cfg.RedisURL = rds.URL
	s := parlortest.Start(t, cfg)
	ann := s.Register(t, "ann")
	login := func() *apiclient.LoginResponse {
		t.Helper()
		res, err := s.Client.LoginWithResponse(ctx, apiclient.LoginJSONRequestBody{Email: ann.Email, Password: ann.Password})
		require.NoError(t, err)
		return res
	}
	require.Equal(t, http.StatusOK, login().StatusCode())

	rds.Kill()
	o := &outcomes{statuses: map[int]int{}}
	res := login()
	o.record("POST /v1/auth/login", res.HTTPResponse, res.Body)
	require.Equal(t, http.StatusServiceUnavailable, res.StatusCode(), string(res.Body))
	require.Empty(t, o.bad)
	me, err := ann.Client.GetMeWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, me.StatusCode(), "what needs only PostgreSQL still works: %s", me.Body)

	rds.Restart()
	require.Eventually(t, func() bool { return login().StatusCode() == http.StatusOK }, 15*time.Second, 100*time.Millisecond,
		"sign-in works again once Redis is back")
}
