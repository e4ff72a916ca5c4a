package httpapi_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// TestAKeyReusedAfterItsWindowIsANewRequest: an Idempotency-Key is honoured for its
// retention (24 h); reused after it, it is a new request — Stripe's rule — on every
// money-moving POST alike: a tip moves credits again (not the day-old tip replayed), a
// top-up is a new top-up, a paid join joins again. Never a replay, never a 5xx.
func TestAKeyReusedAfterItsWindowIsANewRequest(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob := s.Register(t, "ann"), s.Register(t, "bob")
	price := int64(10)
	created, err := ann.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "window", EntryPrice: &price})
	require.NoError(t, err)
	require.Equal(t, 201, created.StatusCode(), string(created.Body))
	room := created.JSON201.Id
	s.Grant(t, bob, 100)
	expire := func(key string) {
		t.Helper()
		_, err := s.Pool.Exec(ctx, "UPDATE idempotency_keys SET created_at = created_at - interval '25 hours', locked_at = locked_at - interval '25 hours' WHERE user_id = $1 AND key = $2", bob.ID, key)
		require.NoError(t, err)
	}

	// A paid join, left, then joined again under the same key a day later: a new join (not
	// the old answer replayed), free as every rejoin is.
	require.Equal(t, 200, joinRoom(t, bob, room, "join-key").StatusCode())
	require.Equal(t, int64(90), parlortest.BalanceOf(t, bob))
	res, err := bob.Client.LeaveRoomWithResponse(ctx, room)
	require.NoError(t, err)
	require.Equal(t, 204, res.StatusCode(), string(res.Body))
	expire("join-key")
	again := joinRoom(t, bob, room, "join-key")
	require.Equal(t, 200, again.StatusCode(), string(again.Body))
	require.Empty(t, again.HTTPResponse.Header.Get("Idempotent-Replayed"))
	require.Equal(t, int64(90), parlortest.BalanceOf(t, bob), "a room is paid for once")
	require.Equal(t, 2, s.Count(t, "SELECT count(*) FROM room_events WHERE room_id = $1 AND type = 'member.joined' AND user_id = $2", room, bob.ID))

	// A tip, and the same tip under the same key a day later: a second tip.
	first := tip(t, bob, room, "tip-key", ann.ID, 5)
	require.Equal(t, 201, first.StatusCode(), string(first.Body))
	expire("tip-key")
	second := tip(t, bob, room, "tip-key", ann.ID, 5)
	require.Equal(t, 201, second.StatusCode(), string(second.Body))
	require.Empty(t, second.HTTPResponse.Header.Get("Idempotent-Replayed"))
	require.NotEqual(t, first.JSON201.Id, second.JSON201.Id, "a new tip, not the day-old one")
	require.Equal(t, int64(80), parlortest.BalanceOf(t, bob))
	// Within the window the second tip's key replays the second tip.
	replay := tip(t, bob, room, "tip-key", ann.ID, 5)
	require.Equal(t, "true", replay.HTTPResponse.Header.Get("Idempotent-Replayed"))
	require.Equal(t, second.JSON201.Id, replay.JSON201.Id)
	require.Equal(t, int64(80), parlortest.BalanceOf(t, bob))

	// A top-up, and the same purchase under the same key a day later: a new top-up.
	buy := func() *apiclient.CreateTopupResponse {
		res, err := bob.Client.CreateTopupWithResponse(ctx, &apiclient.CreateTopupParams{IdempotencyKey: "topup-key"},
			apiclient.CreateTopupJSONRequestBody{PackageId: "small"})
		require.NoError(t, err)
		require.Equal(t, 201, res.StatusCode(), string(res.Body))
		return res
	}
	one := buy()
	expire("topup-key")
	two := buy()
	require.Empty(t, two.HTTPResponse.Header.Get("Idempotent-Replayed"))
	require.NotEqual(t, one.JSON201.Id, two.JSON201.Id)
	require.Equal(t, 2, s.Count(t, "SELECT count(*) FROM topups WHERE user_id = $1", bob.ID))
	require.NotEqual(t, uuid.Nil, two.JSON201.Id)
	requireBooksBalance(t, s)
}
