package realtime_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

var ctx = context.Background()

func createRoom(t *testing.T, u *parlortest.User, name string) uuid.UUID {
	t.Helper()
	vis := apiclient.VisibilityPublic
	res, err := u.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: name, Visibility: &vis})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, res.StatusCode(), string(res.Body))
	return res.JSON201.Id
}

func join(t *testing.T, u *parlortest.User, room uuid.UUID) {
	t.Helper()
	res, err := u.Client.JoinRoomWithResponse(ctx, room, nil)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
}

func send(t *testing.T, c *apiclient.ClientWithResponses, room uuid.UUID, body string) apiclient.Message {
	t.Helper()
	res, err := c.SendMessageWithResponse(ctx, room, apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: body})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, res.StatusCode(), string(res.Body))
	return *res.JSON201
}

// requireInOrder checks events are gap-free and ascending per room, and returns them by room.
func requireInOrder(t *testing.T, frames []parlortest.Frame) map[uuid.UUID][]int64 {
	t.Helper()
	by := map[uuid.UUID][]int64{}
	for _, f := range frames {
		e := f.Event
		require.NotNil(t, e)
		seqs := by[e.RoomId]
		if len(seqs) > 0 {
			require.Equal(t, seqs[len(seqs)-1]+1, e.Seq, "room %s: seq %d after %d", e.RoomId, e.Seq, seqs[len(seqs)-1])
		}
		by[e.RoomId] = append(seqs, e.Seq)
		require.NotEmpty(t, f.Token)
	}
	return by
}

func TestHelloThenLiveEventsAcrossInstances(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	a := parlortest.Start(t, cfg)
	b := parlortest.Start(t, cfg)
	ann := a.Register(t, "ann")
	bob := a.Register(t, "bob")
	room := createRoom(t, ann, "live")
	join(t, bob, room)

	ws := a.Connect(t, ann, "")
	hello := ws.Next("hello", 5*time.Second)
	require.NotEmpty(t, hello.Hello.ConnectionId)
	require.Equal(t, 65536, hello.Hello.Limits.MaxFrameBytes)
	require.NotEmpty(t, hello.Token)

	// Messages sent through instance B's REST API arrive on A, in order.
	bobOnB := b.NewClient(parlortest.Bearer(bob.AccessToken))
	var sent []apiclient.Message
	for i := 0; i < 20; i++ {
		sent = append(sent, send(t, bobOnB, room, fmt.Sprintf("m%d", i)))
	}
	frames := ws.Events(20, 10*time.Second)
	requireInOrder(t, frames)
	for i, f := range frames {
		require.Equal(t, apiclient.MessageCreated, f.Event.Type)
		require.Equal(t, sent[i].Id, f.Event.Message.Id)
		require.Equal(t, fmt.Sprintf("m%d", i), *f.Event.Message.Body)
	}

	// Typing from a client on B reaches A.
	bobWS := b.Connect(t, bob, "")
	bobWS.Next("hello", 5*time.Second)
	require.NoError(t, bobWS.Send(map[string]any{"type": "typing.start", "room_id": room}))
	typing := ws.Next("typing", 5*time.Second)
	require.Contains(t, string(typing.Raw), bob.ID.String())
	require.Contains(t, string(typing.Raw), `"typing":true`)
}

// A socket opened before its user creates a room follows that room at once: the creator's
// own member.joined arrives live, and so does everything after it. (Creating a room once
// appended the event without publishing it, so the creator's open sockets never heard of
// the room until they reconnected.)
func TestACreatorsOpenSocketFollowsTheNewRoom(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann := s.Register(t, "ann")
	bob := s.Register(t, "bob")
	ws := s.Connect(t, ann, "")
	ws.Next("hello", 5*time.Second)

	room := createRoom(t, ann, "made while connected")
	created := ws.Events(1, 5*time.Second)[0].Event
	require.Equal(t, room, created.RoomId)
	require.Equal(t, apiclient.MemberJoined, created.Type)
	require.Equal(t, ann.ID, *created.UserId)

	join(t, bob, room)
	msg := send(t, bob.Client, room, "hello, creator")
	got := ws.Events(2, 5*time.Second)
	require.Equal(t, apiclient.MemberJoined, got[0].Event.Type)
	require.Equal(t, bob.ID, *got[0].Event.UserId)
	require.Equal(t, apiclient.MessageCreated, got[1].Event.Type)
	require.Equal(t, msg.Id, got[1].Event.Message.Id)
}
