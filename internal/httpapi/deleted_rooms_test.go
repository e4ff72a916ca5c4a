package httpapi_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/rooms"
)

// A deleted room disappears for everyone, as the contract says (issue 12, hole 3): its
// members get room.deleted as the last event of it, on sync and on the socket, and are
// members no more — it no longer counts against their room cap, no room list shows it, and
// it answers 404 to everything, leaving included.
func TestADeletedRoomLetsGoOfItsMembers(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	owner, bob := s.Register(t, "owner"), s.Register(t, "bob")
	room := parlortest.CreateRoom(t, owner, "doomed", apiclient.VisibilityPublic).Id
	rrJoin(t, s, bob, room)
	// bob is at the cap: the doomed room and MaxRoomsPerUser-1 of his own (made in SQL).
	_, err := s.Pool.Exec(ctx, `
		WITH made AS (
			INSERT INTO rooms (name, visibility, owner_id, member_count)
			SELECT 'room ' || i, 'private', $1, 1 FROM generate_series(1, $2::int) i
			RETURNING id)
		INSERT INTO room_members (room_id, user_id, role, joined_seq) SELECT id, $1, 'owner', 0 FROM made`,
		bob.ID, rooms.MaxRoomsPerUser-1)
	require.NoError(t, err)
	full, err := bob.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "one too many"})
	require.NoError(t, err)
	parlortest.RequireProblem(t, full.HTTPResponse, full.Body, 409, "room_limit_reached")

	first, err := bob.Client.SyncWithResponse(ctx, &apiclient.SyncParams{})
	require.NoError(t, err)
	require.Equal(t, 200, first.StatusCode(), string(first.Body))
	since := first.JSON200.NextToken
	ws := s.Connect(t, bob, since)
	ws.Next("hello", 5*time.Second)

	del, err := owner.Client.DeleteRoomWithResponse(ctx, room)
	require.NoError(t, err)
	require.Equal(t, 204, del.StatusCode(), string(del.Body))

	// The socket and sync both end the room with room.deleted.
	ev := ws.Events(1, 5*time.Second)[0]
	require.Equal(t, apiclient.RoomDeleted, ev.Event.Type)
	require.Equal(t, room, ev.Event.RoomId)
	page, err := bob.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &since})
	require.NoError(t, err)
	require.Equal(t, 200, page.StatusCode(), string(page.Body))
	require.Len(t, page.JSON200.Events, 1)
	require.Equal(t, apiclient.RoomDeleted, page.JSON200.Events[0].Type)

	// bob is a member of it no more: the place it took is free again.
	made, err := bob.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "after the delete"})
	require.NoError(t, err)
	require.Equal(t, 201, made.StatusCode(), "the deleted room still counts against the cap: %s", made.Body)
	for _, u := range []*parlortest.User{owner, bob} {
		list, err := u.Client.ListRoomsWithResponse(ctx, &apiclient.ListRoomsParams{})
		require.NoError(t, err)
		require.Equal(t, 200, list.StatusCode(), string(list.Body))
		for _, r := range list.JSON200.Items {
			require.NotEqual(t, room, r.Id, "a deleted room is still listed")
		}
	}
	require.Zero(t, s.Count(t, "SELECT count(*) FROM room_members WHERE room_id = $1", room))

	// Everything about it is a 404, leaving included; nothing more of it is synced.
	leave, err := bob.Client.LeaveRoomWithResponse(ctx, room)
	require.NoError(t, err)
	parlortest.RequireProblem(t, leave.HTTPResponse, leave.Body, 404, "not_found")
	get, err := bob.Client.GetRoomWithResponse(ctx, room)
	require.NoError(t, err)
	parlortest.RequireProblem(t, get.HTTPResponse, get.Body, 404, "not_found")
	msg, err := owner.Client.SendMessageWithResponse(ctx, room, apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: "anyone?"})
	require.NoError(t, err)
	parlortest.RequireProblem(t, msg.HTTPResponse, msg.Body, 404, "not_found")
	after := page.JSON200.NextToken
	rest, err := bob.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &after})
	require.NoError(t, err)
	require.Equal(t, 200, rest.StatusCode(), string(rest.Body))
	for _, e := range rest.JSON200.Events {
		require.NotEqual(t, room, e.RoomId, "an event of the deleted room after room.deleted: %+v", e)
	}
}
