package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// requireTokenRefused checks, until timeout (0: at the first try), that an access token no
// longer reads /v1/me nor creates a room: each answers 401 once the revocation has reached
// the instance. It returns how long that took.
func requireTokenRefused(t *testing.T, c *apiclient.ClientWithResponses, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		me, err := c.GetMeWithResponse(ctx)
		require.NoError(t, err)
		if me.StatusCode() == http.StatusUnauthorized {
			parlortest.RequireProblem(t, me.HTTPResponse, me.Body, 401, "unauthorized")
			break
		}
		require.Equal(t, http.StatusOK, me.StatusCode(), string(me.Body))
		if time.Since(start) > timeout {
			t.Fatalf("the token of a revoked session still reads /v1/me %s later", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	room, err := c.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "after the end"})
	require.NoError(t, err)
	parlortest.RequireProblem(t, room.HTTPResponse, room.Body, 401, "unauthorized")
	return took
}

// Logout means logout: the session's access token stops working at once on the instance
// that revoked it and within 5 s on every other (issue 12, hole 1), on a server started
// after the logout too, and logging out again with it is still not an error.
func TestARevokedSessionsAccessTokenIsRefusedEverywhere(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	a := parlortest.Start(t, cfg)
	b := parlortest.Start(t, cfg)

	t.Run("logout", func(t *testing.T) {
		t.Parallel()
		u := a.Register(t, "olga")
		onB := b.NewClient(parlortest.Bearer(u.AccessToken))
		me, err := onB.GetMeWithResponse(ctx)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, me.StatusCode())

		res, err := u.Client.LogoutWithResponse(ctx)
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, res.StatusCode(), string(res.Body))
		requireTokenRefused(t, u.Client, 0) // at once where it logged out
		took := requireTokenRefused(t, onB, 5*time.Second)
		t.Logf("the other instance refused the token %s after the logout", took)

		again, err := u.Client.LogoutWithResponse(ctx)
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, again.StatusCode(), "logging out twice is not an error: %s", again.Body)

		// An instance that starts later knows of the revocation before its first request.
		later := parlortest.Start(t, cfg)
		requireTokenRefused(t, later.NewClient(parlortest.Bearer(u.AccessToken)), 0)
	})

	t.Run("refresh-token reuse", func(t *testing.T) {
		t.Parallel()
		u := a.Register(t, "pavel")
		first, err := a.Client.RefreshWithResponse(ctx, apiclient.RefreshJSONRequestBody{RefreshToken: u.RefreshToken})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, first.StatusCode(), string(first.Body))
		// The old refresh token again: theft, the whole session is revoked, including the
		// access token the first refresh returned.
		reuse, err := b.Client.RefreshWithResponse(ctx, apiclient.RefreshJSONRequestBody{RefreshToken: u.RefreshToken})
		require.NoError(t, err)
		parlortest.RequireProblem(t, reuse.HTTPResponse, reuse.Body, 401, "refresh_token_reused")
		fresh := first.JSON200.AccessToken
		requireTokenRefused(t, b.NewClient(parlortest.Bearer(fresh)), 0)
		requireTokenRefused(t, a.NewClient(parlortest.Bearer(fresh)), 5*time.Second)
	})

	t.Run("other sessions of the user keep working", func(t *testing.T) {
		t.Parallel()
		u := a.Register(t, "quinn")
		login, err := b.Client.LoginWithResponse(ctx, apiclient.LoginJSONRequestBody{Email: u.Email, Password: u.Password})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, login.StatusCode(), string(login.Body))
		res, err := u.Client.LogoutWithResponse(ctx)
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, res.StatusCode())
		requireTokenRefused(t, u.Client, 0)
		requireTokenRefused(t, b.NewClient(parlortest.Bearer(u.AccessToken)), 5*time.Second)
		for _, s := range []*parlortest.Server{a, b} {
			me, err := s.NewClient(parlortest.Bearer(login.JSON200.AccessToken)).GetMeWithResponse(ctx)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, me.StatusCode(), "another session of the user: %s", me.Body)
		}
	})
}
