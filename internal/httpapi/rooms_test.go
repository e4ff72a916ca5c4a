package httpapi_test

import (
	"net/http"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/rooms"
)

func TestRoomLifecycleAndMessages(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob := s.Register(t, "ann"), s.Register(t, "bob")

	room := parlortest.CreateRoom(t, ann, "  General  ", apiclient.VisibilityPublic)
	require.Equal(t, "General", room.Name)
	require.Equal(t, int64(1), room.LastSeq, "the owner's join is the room's first event")
	require.Equal(t, apiclient.RoleOwner, room.Membership.Role)
	require.Equal(t, 1, room.MemberCount)

	// Bob sees the public room without being a member, joins it, and both chat.
	got, err := bob.Client.GetRoomWithResponse(ctx, room.Id)
	require.NoError(t, err)
	require.Equal(t, 200, got.StatusCode())
	require.Nil(t, got.JSON200.Membership)
	join, err := bob.Client.JoinRoomWithResponse(ctx, room.Id, nil)
	require.NoError(t, err)
	require.Equal(t, 200, join.StatusCode(), string(join.Body))
	require.Equal(t, apiclient.RoleMember, join.JSON200.Membership.Role)
	require.Equal(t, 2, join.JSON200.MemberCount)
	again, err := bob.Client.JoinRoomWithResponse(ctx, room.Id, nil)
	require.NoError(t, err)
	require.Equal(t, 200, again.StatusCode())
	require.Equal(t, int64(2), again.JSON200.LastSeq, "joining twice appends nothing")

	m1 := parlortest.Send(t, ann, room.Id, "hello")
	require.Equal(t, int64(3), m1.Seq)
	reply, err := bob.Client.SendMessageWithResponse(ctx, room.Id, apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: "hi ann", ReplyTo: &m1.Id})
	require.NoError(t, err)
	require.Equal(t, 201, reply.StatusCode(), string(reply.Body))
	require.Equal(t, m1.Id, *reply.JSON201.ReplyTo)

	// Reactions are counted per emoji, once per user, with "me" from the viewer's side.
	for _, u := range []*parlortest.User{ann, bob, bob} {
		res, err := u.Client.AddReactionWithResponse(ctx, room.Id, m1.Id, "👍")
		require.NoError(t, err)
		require.Equal(t, 204, res.StatusCode(), string(res.Body))
	}
	hist, err := bob.Client.ListMessagesWithResponse(ctx, room.Id, &apiclient.ListMessagesParams{})
	require.NoError(t, err)
	require.Equal(t, 200, hist.StatusCode(), string(hist.Body))
	require.Len(t, hist.JSON200.Items, 2)
	require.Equal(t, []apiclient.ReactionCount{{Emoji: "👍", Count: 2, Me: boolPtr(true)}}, hist.JSON200.Items[0].Reactions)

	// Edit by the author keeps edited_at; a delete leaves a tombstone without the body.
	edit, err := ann.Client.EditMessageWithResponse(ctx, room.Id, m1.Id, apiclient.EditMessageJSONRequestBody{Body: "hello, all"})
	require.NoError(t, err)
	require.Equal(t, 200, edit.StatusCode(), string(edit.Body))
	require.Equal(t, "hello, all", *edit.JSON200.Body)
	require.NotNil(t, edit.JSON200.EditedAt)
	del, err := bob.Client.DeleteMessageWithResponse(ctx, room.Id, reply.JSON201.Id)
	require.NoError(t, err)
	require.Equal(t, 204, del.StatusCode(), string(del.Body))
	hist, err = ann.Client.ListMessagesWithResponse(ctx, room.Id, &apiclient.ListMessagesParams{})
	require.NoError(t, err)
	last := hist.JSON200.Items[1]
	require.True(t, last.Deleted)
	require.Nil(t, last.Body)
	require.NotContains(t, string(hist.Body), "hi ann")

	// Bob leaves; the room is now 404 for his reads and writes... but still visible (public).
	leave, err := bob.Client.LeaveRoomWithResponse(ctx, room.Id)
	require.NoError(t, err)
	require.Equal(t, 204, leave.StatusCode())
	res, err := bob.Client.ListMessagesWithResponse(ctx, room.Id, &apiclient.ListMessagesParams{})
	require.NoError(t, err)
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 404, "not_found")
	// The owner cannot leave.
	ownerLeave, err := ann.Client.LeaveRoomWithResponse(ctx, room.Id)
	require.NoError(t, err)
	parlortest.RequireProblem(t, ownerLeave.HTTPResponse, ownerLeave.Body, 409, "conflict")
}

func TestIdempotentSendUnderConcurrentRetries(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann := s.Register(t, "ann")
	room := parlortest.CreateRoom(t, ann, "retries", apiclient.VisibilityPublic)

	clientID := uuid.New()
	const n = 20
	var wg sync.WaitGroup
	results := make([]*apiclient.SendMessageResponse, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := ann.Client.SendMessageWithResponse(ctx, room.Id, apiclient.SendMessageJSONRequestBody{ClientMsgId: clientID, Body: "once"})
			if err != nil {
				t.Error(err)
				return
			}
			results[i] = res
		}()
	}
	close(start)
	wg.Wait()
	created := 0
	var first *apiclient.Message
	for _, res := range results {
		require.NotNil(t, res)
		msg := res.JSON201
		if res.StatusCode() == 201 {
			created++
		} else {
			require.Equal(t, 200, res.StatusCode(), string(res.Body))
			msg = res.JSON200
		}
		if first == nil {
			first = msg
		}
		require.Equal(t, first.Id, msg.Id)
		require.Equal(t, first.Seq, msg.Seq)
	}
	require.Equal(t, 1, created)
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM messages"))
	// The seq stayed gap-free: the room's log ends at the one message.
	got, err := ann.Client.GetRoomWithResponse(ctx, room.Id)
	require.NoError(t, err)
	require.Equal(t, first.Seq, got.JSON200.LastSeq)
	require.Equal(t, int(first.Seq), s.Count(t, "SELECT count(*) FROM room_events WHERE room_id = $1", room.Id))
}

func boolPtr(b bool) *bool { return &b }

// TestRoomLimitPerAccount: an account can be in at most rooms.MaxRoomsPerUser rooms — the
// most a fresh sync's room summary lists — so neither joining nor creating a room takes it
// past the limit, concurrent joins included, and leaving a room makes space again.
func TestRoomLimitPerAccount(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob := s.Register(t, "ann"), s.Register(t, "bob")
	// ann already owns MaxRoomsPerUser-1 rooms (made in SQL: a thousand API calls add nothing).
	_, err := s.Pool.Exec(ctx, `
		WITH made AS (
			INSERT INTO rooms (name, visibility, owner_id, member_count)
			SELECT 'room ' || i, 'private', $1, 1 FROM generate_series(1, $2::int) i
			RETURNING id)
		INSERT INTO room_members (room_id, user_id, role, joined_seq) SELECT id, $1, 'owner', 0 FROM made`,
		ann.ID, rooms.MaxRoomsPerUser-1)
	require.NoError(t, err)
	open := make([]uuid.UUID, 3)
	for i := range open {
		open[i] = parlortest.CreateRoom(t, bob, "open", apiclient.VisibilityPublic).Id
	}

	// Three concurrent joins for the one free place: exactly one gets in.
	var wg sync.WaitGroup
	statuses := make([]int, len(open))
	for i, room := range open {
		wg.Go(func() {
			res, err := ann.Client.JoinRoomWithResponse(ctx, room, nil)
			if err != nil {
				t.Error(err)
				return
			}
			if res.StatusCode() != 200 {
				parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 409, "room_limit_reached")
			}
			statuses[i] = res.StatusCode()
		})
	}
	wg.Wait()
	var joined uuid.UUID
	for i, st := range statuses {
		if st == 200 {
			require.Equal(t, uuid.Nil, joined, "a second join got in")
			joined = open[i]
		}
	}
	require.NotEqual(t, uuid.Nil, joined, "the free place was taken")
	require.Equal(t, rooms.MaxRoomsPerUser, s.Count(t, "SELECT count(*) FROM room_members WHERE user_id = $1", ann.ID))

	// Creating a room makes ann its owner: refused too, and nothing is created.
	res, err := ann.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "one too many"})
	require.NoError(t, err)
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 409, "room_limit_reached")
	require.Zero(t, s.Count(t, "SELECT count(*) FROM rooms WHERE name = 'one too many'"))

	// Leaving makes space.
	leave, err := ann.Client.LeaveRoomWithResponse(ctx, joined)
	require.NoError(t, err)
	require.Equal(t, 204, leave.StatusCode())
	other := open[0]
	if other == joined {
		other = open[1]
	}
	again, err := ann.Client.JoinRoomWithResponse(ctx, other, nil)
	require.NoError(t, err)
	require.Equal(t, 200, again.StatusCode(), string(again.Body))
}

// TestConcurrentRoomCreationsByOneUser: one account creating rooms in parallel gets every
// one of them. (Counting the account's rooms locks its row; an upgrade from the foreign
// key's share lock once deadlocked two creations.)
func TestConcurrentRoomCreationsByOneUser(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann := s.Register(t, "ann")
	const n = 12
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := ann.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "parallel"})
			if err != nil {
				t.Error(err)
				return
			}
			statuses[i] = res.StatusCode()
		})
	}
	wg.Wait()
	for _, st := range statuses {
		require.Equal(t, http.StatusCreated, st)
	}
	require.Equal(t, n, s.Count(t, "SELECT count(*) FROM room_members WHERE user_id = $1 AND role = 'owner'", ann.ID))
}
