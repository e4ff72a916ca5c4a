package realtime_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

func kick(t *testing.T, actor, target *parlortest.User, room uuid.UUID) {
	t.Helper()
	res, err := actor.Client.KickMemberWithResponse(ctx, room, target.ID)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, res.StatusCode(), string(res.Body))
}

func edit(t *testing.T, u *parlortest.User, room, msg uuid.UUID, body string) {
	t.Helper()
	res, err := u.Client.EditMessageWithResponse(ctx, room, msg, apiclient.EditMessageJSONRequestBody{Body: body})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode(), string(res.Body))
}

func react(t *testing.T, u *parlortest.User, room, msg uuid.UUID, emoji string) {
	t.Helper()
	res, err := u.Client.AddReactionWithResponse(ctx, room, msg, emoji)
	require.NoError(t, err)
	require.Less(t, res.StatusCode(), 300, string(res.Body))
}

// eventsUntil collects a socket's events up to and including the first that match stops at.
func eventsUntil(t *testing.T, ws *parlortest.WS, stop func(apiclient.RoomEvent) bool) []apiclient.RoomEvent {
	t.Helper()
	var out []apiclient.RoomEvent
	for {
		e := *ws.Events(1, 10*time.Second)[0].Event
		out = append(out, e)
		if stop(e) {
			return out
		}
	}
}

func kickOf(u *parlortest.User) func(apiclient.RoomEvent) bool {
	return func(e apiclient.RoomEvent) bool {
		return e.Type == apiclient.MemberKicked && e.UserId != nil && *e.UserId == u.ID
	}
}

// requireMessageAsOf checks that every event about msg shows body and exactly the reactions
// in want, and that nothing of dump mentions what came later.
func requireMessageAsOf(t *testing.T, evs []apiclient.RoomEvent, msg uuid.UUID, body string, want map[string]int, later ...string) {
	t.Helper()
	raw, err := json.Marshal(evs)
	require.NoError(t, err)
	dump := string(raw)
	seen := 0
	for _, e := range evs {
		if e.Message == nil || e.Message.Id != msg {
			continue
		}
		seen++
		require.NotNil(t, e.Message.Body, "%s", dump)
		require.Equal(t, body, *e.Message.Body, "%s event %d", e.Type, e.Seq)
		got := map[string]int{}
		for _, rc := range e.Message.Reactions {
			got[rc.Emoji] = rc.Count
		}
		require.Equal(t, want, got, "%s event %d", e.Type, e.Seq)
	}
	require.Positive(t, seen, "no event about the message: %s", dump)
	for _, l := range later {
		require.NotContains(t, dump, l)
	}
}

// Hole 2 of issue 12, on the socket: resuming after a removal replays the stretch of the room
// the user was a member for as it was when they were removed.
func TestAReplayAfterARemovalShowsTheRoomAsItWasThen(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob, carl := s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "carl")
	room := createRoom(t, ann, "replay periods")
	join(t, bob, room)
	join(t, carl, room)
	ws := s.Connect(t, bob, "")
	token := ws.Next("hello", 5*time.Second).Token
	require.NoError(t, ws.Conn.Close())

	m := send(t, ann.Client, room, "first draft")
	edit(t, ann, room, m.Id, "what bob read")
	react(t, carl, room, m.Id, "👍")
	kick(t, ann, bob, room)
	edit(t, ann, room, m.Id, "written after bob was removed")
	react(t, carl, room, m.Id, "🤫")

	evs := eventsUntil(t, s.Connect(t, bob, token), kickOf(bob))
	requireMessageAsOf(t, evs, m.Id, "what bob read", map[string]int{"👍": 1}, "written after bob was removed", "🤫")
}

// And live: when a removal and a later change of what the removed user saw reach the
// fan-out in one batch, the removed user's copy of the earlier events shows nothing of the
// change, and the members who stay get the change.
func TestALiveBatchWithARemovalShowsTheRemovedUserNothingAfterIt(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	cfg.WSBatchInterval = time.Second // what commits within a second goes out as one batch
	s := parlortest.Start(t, cfg)
	ann, bob, carl := s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "carl")
	room := createRoom(t, ann, "live periods")
	join(t, bob, room)
	join(t, carl, room)
	bobWS, carlWS := s.Connect(t, bob, ""), s.Connect(t, carl, "")
	bobWS.Next("hello", 5*time.Second)
	carlWS.Next("hello", 5*time.Second)

	// A batch goes out now; the next one is read a second later at the earliest, with all
	// of what follows in it.
	warm := send(t, ann.Client, room, "warm-up")
	require.Equal(t, warm.Id, bobWS.Events(1, 5*time.Second)[0].Event.Message.Id)
	require.Equal(t, warm.Id, carlWS.Events(1, 5*time.Second)[0].Event.Message.Id)
	m := send(t, ann.Client, room, "what bob read")
	kick(t, ann, bob, room)
	edit(t, ann, room, m.Id, "written after bob was removed")

	bobs := eventsUntil(t, bobWS, kickOf(bob))
	requireMessageAsOf(t, bobs, m.Id, "what bob read", map[string]int{}, "written after bob was removed")
	carls := eventsUntil(t, carlWS, func(e apiclient.RoomEvent) bool { return e.Type == apiclient.MessageEdited })
	last := carls[len(carls)-1]
	require.Equal(t, "written after bob was removed", *last.Message.Body, "the members who stay get the edit")
}
