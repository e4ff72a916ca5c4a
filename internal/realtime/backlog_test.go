package realtime_test

// A sync token's cost is bounded: reading from a token costs the events behind it in the
// reader's rooms, so past APP_SYNC_MAX_BACKLOG of them the token gets the documented "start
// over" answer (GET /v1/sync → 410 full_sync_required; the WebSocket upgrades, then closes at
// once with 4400) instead of a read of everything since. Up to the bound, both paths deliver
// every event, page by page.

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

func TestATokenTooFarBehindIsToldToStartOver(t *testing.T) {
	t.Parallel()
	const maxBacklog = 20
	cfg := parlortest.Config(t)
	cfg.SyncMaxBacklog = maxBacklog
	s := parlortest.Start(t, cfg)
	ann := s.Register(t, "ann")
	room := createRoom(t, ann, "busy")
	old := epSync(t, ann.Client, "").NextToken

	// Exactly the bound behind: every event arrives, on both paths, in small pages.
	var sent []uuid.UUID
	for i := range maxBacklog {
		sent = append(sent, send(t, ann.Client, room, fmt.Sprint("message ", i)).Id)
	}
	var got []uuid.UUID
	caughtUp := old
	limit := 7
	for {
		res, err := ann.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &caughtUp, Limit: &limit})
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode(), "a token %d events behind (the bound) still syncs: %s", maxBacklog, res.Body)
		got = append(got, epMessageIDs(res.JSON200.Events)...)
		caughtUp = res.JSON200.NextToken
		if !res.JSON200.HasMore {
			break
		}
	}
	require.Equal(t, sent, got)
	ws := s.Connect(t, ann, old)
	ws.Next("hello", 5*time.Second)
	var replayed []uuid.UUID
	for _, f := range ws.Events(maxBacklog, 5*time.Second) {
		replayed = append(replayed, f.Event.Message.Id)
	}
	require.Equal(t, sent, replayed)
	require.NoError(t, ws.Conn.Close())

	// One more: the old token is past the bound on both paths, and says so before anything.
	send(t, ann.Client, room, "one too many")
	epRequireFullSyncRequired(t, ann, old, fmt.Sprintf("a token %d events behind (bound %d)", maxBacklog+1, maxBacklog))
	epRequireSocketClosed4400(t, s, ann, old, fmt.Sprintf("a token %d events behind (bound %d)", maxBacklog+1, maxBacklog))

	// A token within the bound, and starting over, work as ever.
	page := epSync(t, ann.Client, caughtUp)
	require.Len(t, page.Events, 1)
	epRequireResumes(t, s, ann, room, page.NextToken)
	epRequireResumes(t, s, ann, room, epSync(t, ann.Client, "").NextToken)
}
