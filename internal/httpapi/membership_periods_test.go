package httpapi_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// afterRemoval is a room where bob was a member, then was removed, and where the room and a
// message he saw kept changing afterwards. Bob holds a sync token from before all of it.
type afterRemoval struct {
	room           apiclient.Room
	msg, erased    apiclient.Message
	bobToken       string
	carolToken     string
	ann, bob, carl *parlortest.User
}

// roomChangedAfterRemoval builds afterRemoval, removing bob with remove (a kick or a ban).
func roomChangedAfterRemoval(t *testing.T, s *parlortest.Server, remove func(ann, bob *parlortest.User, room uuid.UUID)) afterRemoval {
	t.Helper()
	ann, bob, carl := s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "carl")
	room := parlortest.CreateRoom(t, ann, "periods", apiclient.VisibilityPublic)
	for _, u := range []*parlortest.User{bob, carl} {
		res, err := u.Client.JoinRoomWithResponse(ctx, room.Id, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode(), string(res.Body))
	}
	token := func(u *parlortest.User) string {
		res, err := u.Client.SyncWithResponse(ctx, &apiclient.SyncParams{})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode(), string(res.Body))
		return res.JSON200.NextToken
	}
	r := afterRemoval{room: room, ann: ann, bob: bob, carl: carl, bobToken: token(bob), carolToken: token(carl)}
	react := func(u *parlortest.User, m uuid.UUID, emoji string, add bool) {
		t.Helper()
		var status int
		if add {
			res, err := u.Client.AddReactionWithResponse(ctx, room.Id, m, emoji)
			require.NoError(t, err)
			status = res.StatusCode()
		} else {
			res, err := u.Client.RemoveReactionWithResponse(ctx, room.Id, m, emoji)
			require.NoError(t, err)
			status = res.StatusCode()
		}
		require.Less(t, status, 300)
	}
	edit := func(m uuid.UUID, body string) {
		t.Helper()
		res, err := ann.Client.EditMessageWithResponse(ctx, room.Id, m, apiclient.EditMessageJSONRequestBody{Body: body})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode(), string(res.Body))
	}
	topic := func(topic string) {
		t.Helper()
		res, err := ann.Client.UpdateRoomWithResponse(ctx, room.Id, apiclient.UpdateRoomJSONRequestBody{Topic: &topic})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode(), string(res.Body))
	}

	// While bob is a member: a message, edited once; reactions; a topic.
	r.msg = parlortest.Send(t, ann, room.Id, "first draft")
	edit(r.msg.Id, "what bob read")
	react(carl, r.msg.Id, "👍", true)
	react(bob, r.msg.Id, "🎉", true)
	r.erased = parlortest.Send(t, ann, room.Id, "erased later")
	edit(r.erased.Id, "erased later, once edited")
	topic("the topic bob saw")

	remove(ann, bob, room.Id)

	// After: every kind of change to what bob saw.
	edit(r.msg.Id, "written after bob was removed")
	react(carl, r.msg.Id, "👍", false)
	react(carl, r.msg.Id, "🤫", true)
	topic("a topic set after bob was removed")
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM message_revisions WHERE message_id = $1", r.erased.Id))
	res, err := ann.Client.DeleteMessageWithResponse(ctx, room.Id, r.erased.Id)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, res.StatusCode(), string(res.Body))
	require.Zero(t, s.Count(t, "SELECT count(*) FROM message_revisions WHERE message_id = $1", r.erased.Id),
		"no earlier version of a deleted message is kept")
	parlortest.Send(t, ann, room.Id, "a message after bob was removed")
	return r
}

func jsonDump(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// requireAsBobLeftIt checks the events bob receives about the room: every one shows the room
// and its messages as they were when he was removed.
func requireAsBobLeftIt(t *testing.T, r afterRemoval, evs []apiclient.RoomEvent) {
	t.Helper()
	dump := jsonDump(t, evs)
	var created, edited, topic bool
	for _, e := range evs {
		if e.RoomId != r.room.Id {
			continue
		}
		if e.Message != nil && e.Message.Id == r.msg.Id {
			m := e.Message
			require.NotNil(t, m.Body, "%s", dump)
			require.Equal(t, "what bob read", *m.Body, "%s event %d shows the message as bob last saw it", e.Type, e.Seq)
			require.NotNil(t, m.EditedAt, "the edit bob saw is still marked")
			got := map[string]int{}
			for _, rc := range m.Reactions {
				got[rc.Emoji] = rc.Count
				if rc.Emoji == "🎉" {
					require.NotNil(t, rc.Me)
					require.True(t, *rc.Me, "bob's own reaction is his")
				}
			}
			require.Equal(t, map[string]int{"👍": 1, "🎉": 1}, got, "%s event %d: the reactions when bob was removed", e.Type, e.Seq)
			created = created || e.Type == apiclient.MessageCreated
			edited = edited || e.Type == apiclient.MessageEdited
		}
		if e.Message != nil && e.Message.Id == r.erased.Id {
			// Deleting erases the text for everyone, former members included: deleted text is
			// kept nowhere, so it cannot be shown as it was.
			require.True(t, e.Message.Deleted, "%s", dump)
			require.Nil(t, e.Message.Body)
		}
		if e.Room != nil {
			require.Equal(t, "the topic bob saw", e.Room.Topic, "%s event %d shows the room as bob last saw it", e.Type, e.Seq)
			topic = true
		}
	}
	require.True(t, created && edited && topic, "bob's events include the message, its edit and the topic change: %s", dump)
	require.NotContains(t, dump, "written after bob was removed")
	require.NotContains(t, dump, "a topic set after bob was removed")
	require.NotContains(t, dump, "🤫")
	require.NotContains(t, dump, "a message after bob was removed")
	require.NotContains(t, dump, "erased later")
}

// Hole 2 of issue 12: a removed user, syncing from a token of before the removal, received
// the message and room events of their membership with what was written after it.
func TestARemovedUserSyncsTheRoomAsItWasWhenTheyLeft(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	removals := map[string]func(ann, bob *parlortest.User, room uuid.UUID){
		"kicked": func(ann, bob *parlortest.User, room uuid.UUID) {
			res, err := ann.Client.KickMemberWithResponse(ctx, room, bob.ID)
			require.NoError(t, err)
			require.Equal(t, http.StatusNoContent, res.StatusCode(), string(res.Body))
		},
		"left": func(_, bob *parlortest.User, room uuid.UUID) {
			res, err := bob.Client.LeaveRoomWithResponse(ctx, room)
			require.NoError(t, err)
			require.Equal(t, http.StatusNoContent, res.StatusCode(), string(res.Body))
		},
	}
	for name, remove := range removals {
		t.Run(name, func(t *testing.T) {
			r := roomChangedAfterRemoval(t, s, remove)
			evs, _ := syncAll(t, r.bob.Client, r.bobToken)
			requireAsBobLeftIt(t, r, evs)

			// A member who stayed sees every change, each event with the current state.
			evs, _ = syncAll(t, r.carl.Client, r.carolToken)
			dump := jsonDump(t, evs)
			for _, e := range evs {
				if e.Message != nil && e.Message.Id == r.msg.Id {
					require.Equal(t, "written after bob was removed", *e.Message.Body, "%s", dump)
				}
				if e.Room != nil {
					require.Equal(t, "a topic set after bob was removed", e.Room.Topic)
				}
			}
			require.Contains(t, dump, "a message after bob was removed")
		})
	}
}
