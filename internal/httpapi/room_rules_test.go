package httpapi_test

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

func rrRoomPath(id uuid.UUID, suffix string) string { return "/v1/rooms/" + id.String() + suffix }

func rrGetRoom(t *testing.T, u *parlortest.User, id uuid.UUID) apiclient.Room {
	t.Helper()
	res, err := u.Client.GetRoomWithResponse(ctx, id)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	return *res.JSON200
}

func rrJoin(t *testing.T, s *parlortest.Server, u *parlortest.User, room uuid.UUID) {
	t.Helper()
	s.AsOK(t, u, 200, "POST", rrRoomPath(room, "/join"), "")
}

func rrSetRole(t *testing.T, s *parlortest.Server, actor, target *parlortest.User, room uuid.UUID, role string) {
	t.Helper()
	s.AsOK(t, actor, 200, "PUT", rrRoomPath(room, "/members/"+target.ID.String()), parlortest.JSON(map[string]string{"role": role}))
}

// rrMembers returns every member of a room as u sees it, following cursors.
func rrMembers(t *testing.T, u *parlortest.User, room uuid.UUID) map[uuid.UUID]apiclient.Member {
	t.Helper()
	out := map[uuid.UUID]apiclient.Member{}
	params := &apiclient.ListMembersParams{}
	for {
		res, err := u.Client.ListMembersWithResponse(ctx, room, params)
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode(), string(res.Body))
		for _, m := range res.JSON200.Items {
			out[m.UserId] = m
		}
		if res.JSON200.NextCursor == nil {
			return out
		}
		params.Cursor = res.JSON200.NextCursor
	}
}

func rrRoles(t *testing.T, u *parlortest.User, room uuid.UUID) map[uuid.UUID]apiclient.Role {
	t.Helper()
	out := map[uuid.UUID]apiclient.Role{}
	for id, m := range rrMembers(t, u, room) {
		out[id] = m.Role
	}
	return out
}

func rrUntil(d time.Duration) string { return time.Now().Add(d).UTC().Format(time.RFC3339Nano) }

// rrRejected sends a request that must fail with status/code and change nothing in room.
func rrRejected(t *testing.T, s *parlortest.Server, room uuid.UUID, u *parlortest.User, status int, code, method, path, body string) apiclient.Problem {
	t.Helper()
	before := s.RoomState(t, room)
	res, b := s.As(t, u, method, path, body)
	p := parlortest.RequireProblem(t, res, b, status, code)
	require.Equal(t, before, s.RoomState(t, room), "a rejected %s %s changed the room", method, path)
	return p
}

// rrPeople are the users the room-rule scenarios share; each scenario works in rooms of
// its own, so they run in parallel on one server.
type rrPeople struct {
	ann, mia, max, bob, carl, dan, ivy *parlortest.User
}

// TestRoomRules runs the room-rule scenarios on one server: roles, bans, mutes, slow mode,
// archiving, paid rooms, invitations and bad input.
func TestRoomRules(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	p := rrPeople{
		ann: s.Register(t, "ann"), mia: s.Register(t, "mia"), max: s.Register(t, "max"), bob: s.Register(t, "bob"),
		carl: s.Register(t, "carl"), dan: s.Register(t, "dan"), ivy: s.Register(t, "ivy"),
	}
	// The ones that wait for a clock go first, so others run meanwhile.
	for _, sc := range []struct {
		name string
		run  func(*testing.T, *parlortest.Server, rrPeople)
	}{
		{"slow mode", rrSlowMode},
		{"bans", rrBans},
		{"mute", rrMute},
		{"role hierarchy", rrRoleHierarchy},
		{"archive", rrArchive},
		{"paid room", rrPaidRoom},
		{"invites", rrInvites},
		{"bad input", rrBadInput},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t, s, p)
		})
	}
}

func rrRoleHierarchy(t *testing.T, s *parlortest.Server, p rrPeople) {
	ann, mia, max, bob := p.ann, p.mia, p.max, p.bob
	room := parlortest.CreateRoom(t, ann, "hierarchy", apiclient.VisibilityPublic).Id
	for _, u := range []*parlortest.User{mia, max, bob} {
		rrJoin(t, s, u, room)
	}
	rrSetRole(t, s, ann, mia, room, "moderator")
	rrSetRole(t, s, ann, max, room, "moderator")
	roles := rrRoles(t, ann, room)
	require.Equal(t, map[uuid.UUID]apiclient.Role{
		ann.ID: apiclient.RoleOwner, mia.ID: apiclient.RoleModerator, max.ID: apiclient.RoleModerator, bob.ID: apiclient.RoleMember,
	}, roles)

	member := func(u *parlortest.User) string { return rrRoomPath(room, "/members/"+u.ID.String()) }
	mute := parlortest.JSON(map[string]string{"muted_until": rrUntil(time.Hour)})
	ban := func(u *parlortest.User) string { return parlortest.JSON(map[string]any{"user_id": u.ID}) }
	cases := []struct {
		name         string
		as           *parlortest.User
		method, path string
		body         string
		status       int
		code         string
	}{
		{"moderator kicks the owner", mia, "DELETE", member(ann), "", 403, "forbidden"},
		{"moderator kicks a moderator", mia, "DELETE", member(max), "", 403, "forbidden"},
		{"moderator kicks themselves", mia, "DELETE", member(mia), "", 403, "forbidden"},
		{"moderator bans the owner", mia, "POST", rrRoomPath(room, "/bans"), ban(ann), 403, "forbidden"},
		{"moderator bans a moderator", mia, "POST", rrRoomPath(room, "/bans"), ban(max), 403, "forbidden"},
		{"moderator bans themselves", mia, "POST", rrRoomPath(room, "/bans"), ban(mia), 403, "forbidden"},
		{"moderator mutes the owner", mia, "PUT", member(ann), mute, 403, "forbidden"},
		{"moderator mutes a moderator", mia, "PUT", member(max), mute, 403, "forbidden"},
		{"moderator promotes a member to moderator", mia, "PUT", member(bob), `{"role":"moderator"}`, 403, "forbidden"},
		{"moderator demotes a moderator", mia, "PUT", member(max), `{"role":"member"}`, 403, "forbidden"},
		{"moderator demotes the owner", mia, "PUT", member(ann), `{"role":"member"}`, 403, "forbidden"},
		{"owner demotes themselves", ann, "PUT", member(ann), `{"role":"member"}`, 403, "forbidden"},
		{"owner kicks themselves", ann, "DELETE", member(ann), "", 403, "forbidden"},
		{"owner bans themselves", ann, "POST", rrRoomPath(room, "/bans"), ban(ann), 403, "forbidden"},
		{"owner hands out ownership", ann, "PUT", member(bob), `{"role":"owner"}`, 400, "invalid_request"},
		{"member promotes themselves", bob, "PUT", member(bob), `{"role":"moderator"}`, 403, "forbidden"},
		{"member kicks a moderator", bob, "DELETE", member(mia), "", 403, "forbidden"},
		{"member mutes the owner", bob, "PUT", member(ann), mute, 403, "forbidden"},
		{"moderator kicks a non-member", mia, "DELETE", rrRoomPath(room, "/members/"+uuid.NewString()), "", 404, "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rrRejected(t, s, room, tc.as, tc.status, tc.code, tc.method, tc.path, tc.body)
		})
	}
	require.Equal(t, roles, rrRoles(t, ann, room), "a rejected request changed a role")
	for _, u := range []*parlortest.User{ann, mia, max} {
		parlortest.Send(t, u, room, "still unmuted") // nobody above a member was muted
	}

	// What moderators may do, to members only.
	res, b := s.As(t, mia, "PUT", member(bob), mute)
	require.Equal(t, 200, res.StatusCode, string(b))
	var muted apiclient.Member
	require.NoError(t, json.Unmarshal(b, &muted))
	require.NotNil(t, muted.MutedUntil)
	require.Equal(t, apiclient.RoleMember, muted.Role)

	// The owner may demote a moderator, who can then be kicked by the other moderator.
	rrSetRole(t, s, ann, max, room, "member")
	require.Equal(t, apiclient.RoleMember, rrRoles(t, ann, room)[max.ID])
	s.AsOK(t, mia, 204, "DELETE", member(max), "")
	res2, err := max.Client.ListMessagesWithResponse(ctx, room, &apiclient.ListMessagesParams{})
	require.NoError(t, err)
	parlortest.RequireProblem(t, res2.HTTPResponse, res2.Body, 404, "not_found")

	// The owner promotes a member, then kicks and bans moderators.
	rrSetRole(t, s, ann, bob, room, "moderator")
	require.Equal(t, apiclient.RoleModerator, rrGetRoom(t, bob, room).Membership.Role)
	s.AsOK(t, ann, 204, "DELETE", member(mia), "")
	s.AsOK(t, ann, 201, "POST", rrRoomPath(room, "/bans"), ban(bob))
	require.Equal(t, map[uuid.UUID]apiclient.Role{ann.ID: apiclient.RoleOwner}, rrRoles(t, ann, room))
	require.Equal(t, 1, rrGetRoom(t, ann, room).MemberCount)
}

func rrBans(t *testing.T, s *parlortest.Server, p rrPeople) {
	ann, bob, carl := p.ann, p.bob, p.carl
	room := parlortest.CreateRoom(t, ann, "bans", apiclient.VisibilityPublic).Id
	rrJoin(t, s, bob, room)
	bans := rrRoomPath(room, "/bans")

	t.Run("bad bans", func(t *testing.T) {
		rrRejected(t, s, room, ann, 400, "invalid_request", "POST", bans, parlortest.JSON(map[string]any{"user_id": bob.ID, "until": rrUntil(-time.Minute)}))
		rrRejected(t, s, room, ann, 400, "invalid_request", "POST", bans, parlortest.JSON(map[string]any{"user_id": bob.ID, "reason": strings.Repeat("r", 501)}))
		rrRejected(t, s, room, ann, 404, "not_found", "POST", bans, parlortest.JSON(map[string]any{"user_id": uuid.New()}))
		rrRejected(t, s, room, ann, 404, "not_found", "DELETE", bans+"/"+carl.ID.String(), "")
		require.Contains(t, rrMembers(t, ann, room), bob.ID, "a rejected ban removed the member")
	})

	// A ban removes the member; they cannot join back until unbanned.
	var ban apiclient.Ban
	require.NoError(t, json.Unmarshal(s.AsOK(t, ann, 201, "POST", bans, parlortest.JSON(map[string]any{"user_id": bob.ID, "until": rrUntil(time.Hour), "reason": "spam"})), &ban))
	require.Equal(t, bob.ID, ban.UserId)
	require.Equal(t, ann.ID, ban.BannedBy)
	require.NotNil(t, ban.Until)
	require.NotContains(t, rrMembers(t, ann, room), bob.ID)
	require.Equal(t, 1, rrGetRoom(t, ann, room).MemberCount)
	hist, err := bob.Client.ListMessagesWithResponse(ctx, room, &apiclient.ListMessagesParams{})
	require.NoError(t, err)
	parlortest.RequireProblem(t, hist.HTTPResponse, hist.Body, 404, "not_found")
	rrRejected(t, s, room, bob, 403, "banned", "POST", rrRoomPath(room, "/join"), "")
	require.Nil(t, rrGetRoom(t, bob, room).Membership, "the public room is still visible, without a membership")

	s.AsOK(t, ann, 204, "DELETE", bans+"/"+bob.ID.String(), "")
	rrRejected(t, s, room, ann, 404, "not_found", "DELETE", bans+"/"+bob.ID.String(), "")
	rrJoin(t, s, bob, room)
	require.Equal(t, apiclient.RoleMember, rrGetRoom(t, bob, room).Membership.Role)

	// Anyone may be banned, member or not; banning again replaces the ban, and a ban with
	// an expiry blocks joining only until then.
	s.AsOK(t, ann, 201, "POST", bans, parlortest.JSON(map[string]any{"user_id": carl.ID, "reason": "first"}))
	rrRejected(t, s, room, carl, 403, "banned", "POST", rrRoomPath(room, "/join"), "")
	until := time.Now().Add(800 * time.Millisecond)
	var again apiclient.Ban
	require.NoError(t, json.Unmarshal(s.AsOK(t, ann, 201, "POST", bans, parlortest.JSON(map[string]any{"user_id": carl.ID, "reason": "second", "until": until.UTC().Format(time.RFC3339Nano)})), &again))
	require.Equal(t, "second", *again.Reason)
	require.NotNil(t, again.Until)
	require.WithinDuration(t, until, *again.Until, time.Millisecond)
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM room_bans WHERE room_id = $1 AND user_id = $2", room, carl.ID))
	rrRejected(t, s, room, carl, 403, "banned", "POST", rrRoomPath(room, "/join"), "")
	time.Sleep(time.Until(until) + 100*time.Millisecond)
	rrJoin(t, s, carl, room)
	require.Contains(t, rrMembers(t, ann, room), carl.ID)

	// A private room: a banned user cannot be invited.
	priv := parlortest.CreateRoom(t, ann, "private bans", apiclient.VisibilityPrivate).Id
	s.AsOK(t, ann, 201, "POST", rrRoomPath(priv, "/bans"), parlortest.JSON(map[string]any{"user_id": carl.ID}))
	rrRejected(t, s, priv, ann, 409, "conflict", "POST", rrRoomPath(priv, "/invites"), parlortest.JSON(map[string]any{"user_id": carl.ID}))
	rrRejected(t, s, priv, carl, 404, "not_found", "GET", rrRoomPath(priv, ""), "")
}

func rrMute(t *testing.T, s *parlortest.Server, p rrPeople) {
	ann, mia, bob := p.ann, p.mia, p.bob
	room := parlortest.CreateRoom(t, ann, "mute", apiclient.VisibilityPublic).Id
	rrJoin(t, s, mia, room)
	rrJoin(t, s, bob, room)
	rrSetRole(t, s, ann, mia, room, "moderator")
	bobPath := rrRoomPath(room, "/members/"+bob.ID.String())
	sendPath := rrRoomPath(room, "/messages")

	s.AsOK(t, mia, 200, "PUT", bobPath, parlortest.JSON(map[string]string{"muted_until": rrUntil(time.Hour)}))
	problem := rrRejected(t, s, room, bob, 403, "muted", "POST", sendPath, parlortest.SendBody("let me talk"))
	require.NotEmpty(t, problem.Detail)
	me := rrGetRoom(t, bob, room).Membership
	require.NotNil(t, me.MutedUntil, "the muted member is not told")
	require.WithinDuration(t, time.Now().Add(time.Hour), *me.MutedUntil, time.Minute)
	require.NotNil(t, rrMembers(t, ann, room)[bob.ID].MutedUntil)
	// Muted members still read.
	hist, err := bob.Client.ListMessagesWithResponse(ctx, room, &apiclient.ListMessagesParams{})
	require.NoError(t, err)
	require.Equal(t, 200, hist.StatusCode(), string(hist.Body))

	// A time in the past unmutes.
	var m apiclient.Member
	require.NoError(t, json.Unmarshal(s.AsOK(t, mia, 200, "PUT", bobPath, parlortest.JSON(map[string]string{"muted_until": rrUntil(-time.Minute)})), &m))
	require.Nil(t, m.MutedUntil)
	require.Nil(t, rrGetRoom(t, bob, room).Membership.MutedUntil)
	parlortest.Send(t, bob, room, "thanks")

	// The owner can mute a moderator, who then cannot send either.
	s.AsOK(t, ann, 200, "PUT", rrRoomPath(room, "/members/"+mia.ID.String()), parlortest.JSON(map[string]string{"muted_until": rrUntil(time.Hour)}))
	rrRejected(t, s, room, mia, 403, "muted", "POST", sendPath, parlortest.SendBody("hm"))

	// A mute ends by itself when its time comes.
	until := time.Now().Add(800 * time.Millisecond)
	s.AsOK(t, mia, 200, "PUT", bobPath, parlortest.JSON(map[string]string{"muted_until": until.UTC().Format(time.RFC3339Nano)}))
	rrRejected(t, s, room, bob, 403, "muted", "POST", sendPath, parlortest.SendBody("now?"))
	time.Sleep(time.Until(until) + 100*time.Millisecond)
	parlortest.Send(t, bob, room, "now")
	require.Nil(t, rrGetRoom(t, bob, room).Membership.MutedUntil)
}

func rrRetryAfter(t *testing.T, res *http.Response) int {
	t.Helper()
	v := res.Header.Get("Retry-After")
	n, err := strconv.Atoi(v)
	require.NoError(t, err, "Retry-After %q is not whole seconds", v)
	return n
}

func rrSlowMode(t *testing.T, s *parlortest.Server, p rrPeople) {
	ann, mia, bob := p.ann, p.mia, p.bob
	room := parlortest.CreateRoom(t, ann, "slow", apiclient.VisibilityPublic).Id
	rrJoin(t, s, mia, room)
	rrJoin(t, s, bob, room)
	rrSetRole(t, s, ann, mia, room, "moderator")
	sendPath := rrRoomPath(room, "/messages")
	slow := func(secs int) {
		var r apiclient.Room
		require.NoError(t, json.Unmarshal(s.AsOK(t, mia, 200, "PATCH", rrRoomPath(room, ""), parlortest.JSON(map[string]int{"slow_mode_seconds": secs})), &r))
		require.Equal(t, secs, r.SlowModeSeconds)
	}

	slow(60)
	first := parlortest.SendBody("first")
	s.AsOK(t, bob, 201, "POST", sendPath, first)
	before := s.RoomState(t, room)
	res, b := s.As(t, bob, "POST", sendPath, parlortest.SendBody("second"))
	parlortest.RequireProblem(t, res, b, 429, "rate_limited")
	ra := rrRetryAfter(t, res)
	require.True(t, ra >= 1 && ra <= 60, "Retry-After = %d", ra)
	require.Equal(t, before, s.RoomState(t, room), "a throttled send changed the room")
	// A retry of the message already sent is not a new message: it answers, not throttles.
	s.AsOK(t, bob, 200, "POST", sendPath, first)
	// Moderators and the owner are exempt.
	for i := 0; i < 3; i++ {
		parlortest.Send(t, mia, room, "mod "+strconv.Itoa(i))
		parlortest.Send(t, ann, room, "owner "+strconv.Itoa(i))
	}

	// A shorter window applies at once: after it, the member may send again, once.
	slow(1)
	time.Sleep(1100 * time.Millisecond)
	parlortest.Send(t, bob, room, "after the wait")
	res, b = s.As(t, bob, "POST", sendPath, parlortest.SendBody("too soon"))
	parlortest.RequireProblem(t, res, b, 429, "rate_limited")
	require.Equal(t, 1, rrRetryAfter(t, res))

	// Off again: no waiting.
	slow(0)
	parlortest.Send(t, bob, room, "one")
	parlortest.Send(t, bob, room, "two")
}

func rrArchive(t *testing.T, s *parlortest.Server, p rrPeople) {
	ann, mia, bob, carl := p.ann, p.mia, p.bob, p.carl
	room := parlortest.CreateRoom(t, ann, "archive", apiclient.VisibilityPublic).Id
	rrJoin(t, s, mia, room)
	rrJoin(t, s, bob, room)
	rrSetRole(t, s, ann, mia, room, "moderator")
	msg := parlortest.Send(t, bob, room, "before the archive")
	msgPath := rrRoomPath(room, "/messages/"+msg.Id.String())
	s.AsOK(t, bob, 204, "PUT", msgPath+"/reactions/"+url.PathEscape("👍"), "")

	var r apiclient.Room
	require.NoError(t, json.Unmarshal(s.AsOK(t, ann, 200, "PATCH", rrRoomPath(room, ""), `{"archived":true}`), &r))
	require.True(t, r.Archived)
	require.True(t, rrGetRoom(t, carl, room).Archived)

	cases := []struct {
		name         string
		as           *parlortest.User
		method, path string
		body         string
		status       int
		code         string
	}{
		{"send", bob, "POST", rrRoomPath(room, "/messages"), parlortest.SendBody("hello?"), 409, "archived"},
		{"owner sends", ann, "POST", rrRoomPath(room, "/messages"), parlortest.SendBody("hello?"), 409, "archived"},
		{"edit", bob, "PATCH", msgPath, `{"body":"changed"}`, 409, "archived"},
		{"react", bob, "PUT", msgPath + "/reactions/" + url.PathEscape("🎉"), "", 409, "archived"},
		{"unreact", bob, "DELETE", msgPath + "/reactions/" + url.PathEscape("👍"), "", 409, "archived"},
		{"delete a message", bob, "DELETE", msgPath, "", 409, "archived"},
		{"rename", mia, "PATCH", rrRoomPath(room, ""), `{"name":"renamed"}`, 409, "archived"},
		{"join", carl, "POST", rrRoomPath(room, "/join"), "", 409, "archived"},
		{"moderator unarchives", mia, "PATCH", rrRoomPath(room, ""), `{"archived":false}`, 403, "forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rrRejected(t, s, room, tc.as, tc.status, tc.code, tc.method, tc.path, tc.body)
		})
	}
	// Reading still works.
	hist, err := bob.Client.ListMessagesWithResponse(ctx, room, &apiclient.ListMessagesParams{})
	require.NoError(t, err)
	require.Equal(t, 200, hist.StatusCode(), string(hist.Body))
	require.Equal(t, "before the archive", *hist.JSON200.Items[0].Body)

	require.NoError(t, json.Unmarshal(s.AsOK(t, ann, 200, "PATCH", rrRoomPath(room, ""), `{"archived":false}`), &r))
	require.False(t, r.Archived)
	parlortest.Send(t, bob, room, "back again")
	s.AsOK(t, bob, 200, "PATCH", msgPath, `{"body":"changed"}`)
	s.AsOK(t, bob, 204, "PUT", msgPath+"/reactions/"+url.PathEscape("🎉"), "")
	s.AsOK(t, mia, 200, "PATCH", rrRoomPath(room, ""), `{"name":"renamed"}`)
	rrJoin(t, s, carl, room)
}

func rrPaidRoom(t *testing.T, s *parlortest.Server, p rrPeople) {
	ann, bob := p.ann, p.bob
	price := int64(100)
	for _, vis := range []apiclient.Visibility{apiclient.VisibilityPublic, apiclient.VisibilityPrivate} {
		res, err := ann.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "paid " + string(vis), Visibility: &vis, EntryPrice: &price})
		require.NoError(t, err)
		require.Equal(t, 201, res.StatusCode(), string(res.Body))
		room := res.JSON201.Id
		require.Equal(t, price, res.JSON201.EntryPrice)
		if vis == apiclient.VisibilityPrivate {
			s.AsOK(t, ann, 201, "POST", rrRoomPath(room, "/invites"), parlortest.JSON(map[string]any{"user_id": bob.ID}))
		}
		// bob has no credits: the join is refused and changes nothing.
		rrRejected(t, s, room, bob, 422, "insufficient_credits", "POST", rrRoomPath(room, "/join"), "")
		got := rrGetRoom(t, bob, room) // still visible: public, or invited
		require.Nil(t, got.Membership)
		require.Equal(t, 1, got.MemberCount)
		parlortest.Send(t, ann, room, "the owner is in without paying")
	}
}

func rrInvites(t *testing.T, s *parlortest.Server, p rrPeople) {
	ann, mia, ivy, carl := p.ann, p.mia, p.ivy, p.carl // ivy is invited nowhere else
	room := parlortest.CreateRoom(t, ann, "inner circle", apiclient.VisibilityPrivate).Id
	invites := rrRoomPath(room, "/invites")
	s.AsOK(t, ann, 201, "POST", invites, parlortest.JSON(map[string]any{"user_id": mia.ID}))
	rrJoin(t, s, mia, room)
	rrSetRole(t, s, ann, mia, room, "moderator")

	listed := func(u *parlortest.User, scope apiclient.ListRoomsParamsScope) []uuid.UUID {
		t.Helper()
		res, err := u.Client.ListRoomsWithResponse(ctx, &apiclient.ListRoomsParams{Scope: &scope})
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode(), string(res.Body))
		var ids []uuid.UUID
		for _, r := range res.JSON200.Items {
			ids = append(ids, r.Id)
		}
		return ids
	}
	rrRejected(t, s, room, ivy, 404, "not_found", "GET", rrRoomPath(room, ""), "")
	rrRejected(t, s, room, ivy, 404, "not_found", "POST", rrRoomPath(room, "/join"), "")
	require.Empty(t, listed(ivy, apiclient.ListRoomsParamsScopeInvited))
	require.NotContains(t, listed(ivy, apiclient.ListRoomsParamsScopePublic), room)

	var inv apiclient.Invite
	require.NoError(t, json.Unmarshal(s.AsOK(t, mia, 201, "POST", invites, parlortest.JSON(map[string]any{"user_id": ivy.ID})), &inv))
	require.Equal(t, room, inv.RoomId)
	require.Equal(t, ivy.ID, inv.UserId)
	require.Equal(t, mia.ID, inv.InvitedBy)
	// Inviting twice is not an error, and not a second invitation.
	seq := s.RoomState(t, room).LastSeq
	s.AsOK(t, mia, 201, "POST", invites, parlortest.JSON(map[string]any{"user_id": ivy.ID}))
	require.Equal(t, seq, s.RoomState(t, room).LastSeq, "a repeated invitation was recorded again")

	// The invitee sees the room (not as a member) and finds it in their invitations; nothing
	// else in it is open to them yet, and others still see nothing.
	got := rrGetRoom(t, ivy, room)
	require.Nil(t, got.Membership)
	require.Equal(t, "inner circle", got.Name)
	require.Equal(t, []uuid.UUID{room}, listed(ivy, apiclient.ListRoomsParamsScopeInvited))
	require.NotContains(t, listed(ivy, apiclient.ListRoomsParamsScopePublic), room)
	rrRejected(t, s, room, ivy, 404, "not_found", "GET", rrRoomPath(room, "/messages"), "")
	rrRejected(t, s, room, ivy, 404, "not_found", "POST", rrRoomPath(room, "/messages"), parlortest.SendBody("early"))
	rrRejected(t, s, room, carl, 404, "not_found", "GET", rrRoomPath(room, ""), "")

	// Joining uses up the invitation.
	rrJoin(t, s, ivy, room)
	require.Equal(t, apiclient.RoleMember, rrGetRoom(t, ivy, room).Membership.Role)
	require.Empty(t, listed(ivy, apiclient.ListRoomsParamsScopeInvited))
	require.Contains(t, listed(ivy, apiclient.ListRoomsParamsScopeJoined), room)
	parlortest.Send(t, ivy, room, "hello circle")
	rrRejected(t, s, room, mia, 409, "conflict", "POST", invites, parlortest.JSON(map[string]any{"user_id": ivy.ID}))
	rrRejected(t, s, room, mia, 404, "not_found", "POST", invites, parlortest.JSON(map[string]any{"user_id": uuid.New()}))

	// Leaving a private room closes it again.
	s.AsOK(t, ivy, 204, "POST", rrRoomPath(room, "/leave"), "")
	rrRejected(t, s, room, ivy, 404, "not_found", "GET", rrRoomPath(room, ""), "")
	rrRejected(t, s, room, ivy, 404, "not_found", "POST", rrRoomPath(room, "/join"), "")
}

func rrBadInput(t *testing.T, s *parlortest.Server, p rrPeople) {
	ann, bob, dan := p.ann, p.bob, p.dan // dan owns no room anywhere
	room := parlortest.CreateRoom(t, ann, "inputs", apiclient.VisibilityPublic).Id
	other := parlortest.CreateRoom(t, ann, "other", apiclient.VisibilityPublic).Id
	rrJoin(t, s, bob, room)
	msg := parlortest.Send(t, bob, room, "original")
	elsewhere := parlortest.Send(t, ann, other, "elsewhere")
	lastSeq := rrGetRoom(t, ann, room).LastSeq

	syncRes, err := ann.Client.SyncWithResponse(ctx, &apiclient.SyncParams{})
	require.NoError(t, err)
	require.Equal(t, 200, syncRes.StatusCode(), string(syncRes.Body))
	token := syncRes.JSON200.NextToken
	limit := 1
	page, err := ann.Client.ListRoomsWithResponse(ctx, &apiclient.ListRoomsParams{Limit: &limit})
	require.NoError(t, err)
	require.NotNil(t, page.JSON200.NextCursor)
	roomsCursor := *page.JSON200.NextCursor

	base := rrRoomPath(room, "")
	msgPath := rrRoomPath(room, "/messages/"+msg.Id.String())
	react := func(emoji string) string { return msgPath + "/reactions/" + url.PathEscape(emoji) }
	sendWith := func(extra map[string]any) string {
		m := map[string]any{"client_msg_id": uuid.NewString(), "body": "hi"}
		for k, v := range extra {
			m[k] = v
		}
		return parlortest.JSON(m)
	}
	q := url.QueryEscape
	cases := []struct {
		name         string
		as           *parlortest.User
		method, path string
		body         string
	}{
		{"send an empty body", bob, "POST", base + "/messages", sendWith(map[string]any{"body": ""})},
		{"send a blank body", bob, "POST", base + "/messages", sendWith(map[string]any{"body": " \n\t "})},
		{"send 4001 characters", bob, "POST", base + "/messages", sendWith(map[string]any{"body": strings.Repeat("a", 4001)})},
		{"send 4001 emoji", bob, "POST", base + "/messages", sendWith(map[string]any{"body": strings.Repeat("😀", 4001)})},
		{"send without a body", bob, "POST", base + "/messages", parlortest.JSON(map[string]any{"client_msg_id": uuid.NewString()})},
		{"send with a bad client_msg_id", bob, "POST", base + "/messages", sendWith(map[string]any{"client_msg_id": "nope"})},
		{"send malformed JSON", bob, "POST", base + "/messages", `{"client_msg_id":`},
		{"reply to another room's message", bob, "POST", base + "/messages", sendWith(map[string]any{"reply_to": elsewhere.Id})},
		{"reply to no message", bob, "POST", base + "/messages", sendWith(map[string]any{"reply_to": uuid.New()})},
		{"edit to blank", bob, "PATCH", msgPath, `{"body":"   "}`},
		{"edit to 4001 characters", bob, "PATCH", msgPath, parlortest.JSON(map[string]string{"body": strings.Repeat("b", 4001)})},
		{"react with 17 characters", bob, "PUT", react("abcdefghijklmnopq"), ""},
		{"react with 17 emoji", bob, "PUT", react(strings.Repeat("👍", 17)), ""},
		{"react with a space", bob, "PUT", react("a b"), ""},
		{"react with a tab", bob, "PUT", react("a\tb"), ""},
		{"react with a newline", bob, "PUT", react("ok\n"), ""},
		{"unreact with 17 characters", bob, "DELETE", react("abcdefghijklmnopq"), ""},
		{"read beyond the last event", bob, "POST", base + "/read", parlortest.JSON(map[string]int64{"seq": lastSeq + 1})},
		{"read a negative seq", bob, "POST", base + "/read", `{"seq":-1}`},
		{"read without a seq", bob, "POST", base + "/read", `{}`},
		{"create a room with a blank name", dan, "POST", "/v1/rooms", `{"name":"   "}`},
		{"create a room with a long name", dan, "POST", "/v1/rooms", parlortest.JSON(map[string]string{"name": strings.Repeat("n", 101)})},
		{"create a room with a long topic", dan, "POST", "/v1/rooms", parlortest.JSON(map[string]string{"name": "n", "topic": strings.Repeat("t", 501)})},
		{"create a room with a negative price", dan, "POST", "/v1/rooms", `{"name":"n","entry_price":-1}`},
		{"create a room with an unknown visibility", dan, "POST", "/v1/rooms", `{"name":"n","visibility":"secret"}`},
		{"create a room with too slow a slow mode", dan, "POST", "/v1/rooms", `{"name":"n","slow_mode_seconds":86401}`},
		{"change nothing", ann, "PATCH", base, `{}`},
		{"rename to blank", ann, "PATCH", base, `{"name":"  "}`},
		{"negative slow mode", ann, "PATCH", base, `{"slow_mode_seconds":-1}`},
		{"update a member with nothing", ann, "PUT", base + "/members/" + bob.ID.String(), `{}`},
		{"mute until a non-time", ann, "PUT", base + "/members/" + bob.ID.String(), `{"muted_until":"tomorrow"}`},
		{"ban until the past", ann, "POST", base + "/bans", parlortest.JSON(map[string]any{"user_id": bob.ID, "until": rrUntil(-time.Second)})},
		{"list rooms with limit 0", ann, "GET", "/v1/rooms?limit=0", ""},
		{"list rooms with limit 101", ann, "GET", "/v1/rooms?limit=101", ""},
		{"list rooms in an unknown scope", ann, "GET", "/v1/rooms?scope=all", ""},
		{"search with a 101-character prefix", ann, "GET", "/v1/rooms?scope=public&q=" + strings.Repeat("q", 101), ""},
		{"list rooms with a garbage cursor", ann, "GET", "/v1/rooms?cursor=not-a-cursor", ""},
		{"list rooms with a tampered cursor", ann, "GET", "/v1/rooms?cursor=" + q(parlortest.Tampered(roomsCursor)), ""},
		{"list rooms with a truncated cursor", ann, "GET", "/v1/rooms?cursor=" + q(roomsCursor[:len(roomsCursor)-4]), ""},
		{"list public rooms with a joined-rooms cursor", ann, "GET", "/v1/rooms?scope=public&cursor=" + q(roomsCursor), ""},
		{"list invitations with a joined-rooms cursor", ann, "GET", "/v1/rooms?scope=invited&cursor=" + q(roomsCursor), ""},
		{"list members with a rooms cursor", ann, "GET", base + "/members?cursor=" + q(roomsCursor), ""},
		{"list members with limit 0", ann, "GET", base + "/members?limit=0", ""},
		{"list members with limit 101", ann, "GET", base + "/members?limit=101", ""},
		{"list messages with limit 0", ann, "GET", base + "/messages?limit=0", ""},
		{"list messages with limit 101", ann, "GET", base + "/messages?limit=101", ""},
		{"list messages both ways", ann, "GET", base + "/messages?before_seq=3&after_seq=1", ""},
		{"list messages before seq 0", ann, "GET", base + "/messages?before_seq=0", ""},
		{"sync waiting too long", ann, "GET", "/v1/sync?since=" + q(token) + "&timeout_ms=30001", ""},
		{"sync with limit 501", ann, "GET", "/v1/sync?since=" + q(token) + "&limit=501", ""},
		{"sync with limit 0", ann, "GET", "/v1/sync?limit=0", ""},
	}
	danRooms := func() int { return s.Count(t, "SELECT count(*) FROM rooms WHERE owner_id = $1", dan.ID) }
	require.Equal(t, 0, danRooms())
	// A sync token the server cannot continue from is not a client bug to fix but a state to
	// leave: 410 full_sync_required tells the client to start over without since.
	for name, since := range map[string]string{
		"garbage":       "garbage",
		"tampered":      parlortest.Tampered(token),
		"a list cursor": roomsCursor,
		"over 8 KiB (the old format's tokens grew that long)": strings.Repeat("x", 9000),
	} {
		t.Run("sync with "+name, func(t *testing.T) {
			res, b := s.As(t, ann, "GET", "/v1/sync?since="+q(since), "")
			p := parlortest.RequireProblem(t, res, b, 410, "full_sync_required")
			require.NotNil(t, p.Detail)
			require.Contains(t, *p.Detail, "start over")
		})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, beforeOther := s.RoomState(t, room), s.RoomState(t, other)
			res, b := s.As(t, tc.as, tc.method, tc.path, tc.body)
			p := parlortest.RequireProblem(t, res, b, 400, "invalid_request")
			require.NotEmpty(t, p.Detail)
			require.Equal(t, before, s.RoomState(t, room), "the room changed")
			require.Equal(t, beforeOther, s.RoomState(t, other), "another room changed")
			require.Equal(t, 0, danRooms(), "a rejected request created a room")
		})
	}
	// The message is as it was.
	hist, err := ann.Client.ListMessagesWithResponse(ctx, room, &apiclient.ListMessagesParams{})
	require.NoError(t, err)
	require.Len(t, hist.JSON200.Items, 1)
	require.Equal(t, "original", *hist.JSON200.Items[0].Body)
	require.Empty(t, hist.JSON200.Items[0].Reactions)

	t.Run("limits are inclusive", func(t *testing.T) {
		parlortest.Send(t, bob, room, strings.Repeat("a", 4000))
		long := parlortest.Send(t, bob, room, strings.Repeat("😀", 4000)) // 16,000 bytes
		require.Equal(t, strings.Repeat("😀", 4000), *long.Body)
		emoji := []string{"abcdefghijklmnop", strings.Repeat("👍", 16), "+1", "👍🏽", "100%", "a/b", "é"}
		for _, e := range emoji {
			s.AsOK(t, bob, 204, "PUT", react(e), "")
		}
		hist, err := bob.Client.ListMessagesWithResponse(ctx, room, &apiclient.ListMessagesParams{AfterSeq: rrPtr(int64(0))})
		require.NoError(t, err)
		var got []string
		for _, r := range hist.JSON200.Items[0].Reactions {
			require.Equal(t, 1, r.Count)
			got = append(got, r.Emoji)
		}
		require.ElementsMatch(t, emoji, got, "reactions are not shown as sent")
	})
}

func rrPtr[T any](v T) *T { return &v }

// rrPageAll follows next_cursor through a list, checking page sizes, and returns the ids
// in order.
func rrPageAll(t *testing.T, limit int, fetch func(cursor *string) ([]uuid.UUID, *string)) []uuid.UUID {
	t.Helper()
	var all []uuid.UUID
	var cursor *string
	for pages := 0; ; pages++ {
		require.Less(t, pages, 100, "the list does not end")
		ids, next := fetch(cursor)
		require.LessOrEqual(t, len(ids), limit)
		if next != nil {
			require.Len(t, ids, limit, "a page before the last is short")
		}
		all = append(all, ids...)
		if next == nil {
			return all
		}
		cursor = next
	}
}

func TestRoomRulesPagination(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob := s.Register(t, "ann"), s.Register(t, "bob")
	others := []*parlortest.User{bob}
	for i := 0; i < 2; i++ {
		others = append(others, s.Register(t, fmt.Sprintf("user%d", i)))
	}

	// Eight public rooms (two pairs whose names differ only in case) and three private ones.
	names := []string{"delta", "Bravo", "alpha", "bravo", "Echo", "charlie", "ECHO", "foxtrot"}
	var created []apiclient.Room
	for _, n := range names {
		created = append(created, parlortest.CreateRoom(t, ann, n, apiclient.VisibilityPublic))
	}
	var private []uuid.UUID
	for i := 0; i < 3; i++ {
		r := parlortest.CreateRoom(t, ann, fmt.Sprintf("hidden %d", i), apiclient.VisibilityPrivate)
		private = append(private, r.Id)
		s.AsOK(t, ann, 201, "POST", rrRoomPath(r.Id, "/invites"), parlortest.JSON(map[string]any{"user_id": bob.ID}))
	}
	rooms := func(u *parlortest.User, scope apiclient.ListRoomsParamsScope, limit int) func(*string) ([]uuid.UUID, *string) {
		return func(cursor *string) ([]uuid.UUID, *string) {
			res, err := u.Client.ListRoomsWithResponse(ctx, &apiclient.ListRoomsParams{Scope: &scope, Limit: &limit, Cursor: cursor})
			require.NoError(t, err)
			require.Equal(t, 200, res.StatusCode(), string(res.Body))
			var ids []uuid.UUID
			for _, r := range res.JSON200.Items {
				ids = append(ids, r.Id)
			}
			return ids, res.JSON200.NextCursor
		}
	}

	t.Run("joined, oldest membership first", func(t *testing.T) {
		var want []uuid.UUID
		for _, r := range created {
			want = append(want, r.Id)
		}
		want = append(want, private...)
		for _, limit := range []int{1, 3, 11, 100} {
			require.Equal(t, want, rrPageAll(t, limit, rooms(ann, apiclient.ListRoomsParamsScopeJoined, limit)), "limit %d", limit)
		}
	})
	t.Run("public, by name", func(t *testing.T) {
		sorted := slices.Clone(created)
		slices.SortStableFunc(sorted, func(a, b apiclient.Room) int {
			if c := strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)); c != 0 {
				return c
			}
			return strings.Compare(a.Id.String(), b.Id.String())
		})
		var want []uuid.UUID
		for _, r := range sorted {
			want = append(want, r.Id)
		}
		for _, limit := range []int{1, 2, 3, 8} {
			require.Equal(t, want, rrPageAll(t, limit, rooms(bob, apiclient.ListRoomsParamsScopePublic, limit)), "limit %d", limit)
		}
	})
	t.Run("invited", func(t *testing.T) {
		for _, limit := range []int{1, 2} {
			require.Equal(t, private, rrPageAll(t, limit, rooms(bob, apiclient.ListRoomsParamsScopeInvited, limit)), "limit %d", limit)
		}
	})
	t.Run("members, in joining order", func(t *testing.T) {
		room := created[0].Id
		want := []uuid.UUID{ann.ID}
		for _, u := range others {
			rrJoin(t, s, u, room)
			want = append(want, u.ID)
		}
		members := func(limit int) func(*string) ([]uuid.UUID, *string) {
			return func(cursor *string) ([]uuid.UUID, *string) {
				res, err := bob.Client.ListMembersWithResponse(ctx, room, &apiclient.ListMembersParams{Limit: &limit, Cursor: cursor})
				require.NoError(t, err)
				require.Equal(t, 200, res.StatusCode(), string(res.Body))
				var ids []uuid.UUID
				for _, m := range res.JSON200.Items {
					ids = append(ids, m.UserId)
				}
				return ids, res.JSON200.NextCursor
			}
		}
		for _, limit := range []int{1, 3, 4} {
			require.Equal(t, want, rrPageAll(t, limit, members(limit)), "limit %d", limit)
		}

		// A members cursor belongs to its room and its list.
		limit := 2
		res, err := bob.Client.ListMembersWithResponse(ctx, room, &apiclient.ListMembersParams{Limit: &limit})
		require.NoError(t, err)
		cursor := *res.JSON200.NextCursor
		otherRoom := created[1].Id
		rrJoin(t, s, bob, otherRoom)
		for _, path := range []string{
			rrRoomPath(otherRoom, "/members?limit=2&cursor="+url.QueryEscape(cursor)),
			rrRoomPath(room, "/members?limit=2&cursor="+url.QueryEscape(parlortest.Tampered(cursor))),
			"/v1/rooms?cursor=" + url.QueryEscape(cursor),
			"/v1/rooms?scope=public&cursor=" + url.QueryEscape(cursor),
		} {
			res, b := s.As(t, bob, "GET", path, "")
			parlortest.RequireProblem(t, res, b, 400, "invalid_request")
		}
		// The genuine cursor still works.
		s.AsOK(t, bob, 200, "GET", rrRoomPath(room, "/members?limit=2&cursor="+url.QueryEscape(cursor)), "")
	})
	t.Run("messages, by seq", func(t *testing.T) {
		room := created[2].Id
		var want []int64
		for i := 0; i < 7; i++ {
			want = append(want, parlortest.Send(t, ann, room, fmt.Sprintf("m%d", i)).Seq)
		}
		limit := 3
		// Backwards from the latest, then forwards from the start.
		var back []int64
		params := &apiclient.ListMessagesParams{Limit: &limit}
		for {
			res, err := ann.Client.ListMessagesWithResponse(ctx, room, params)
			require.NoError(t, err)
			require.Equal(t, 200, res.StatusCode(), string(res.Body))
			var page []int64
			for _, m := range res.JSON200.Items {
				page = append(page, m.Seq)
			}
			require.True(t, slices.IsSorted(page))
			back = append(page, back...)
			if !res.JSON200.HasMore {
				break
			}
			params.BeforeSeq = &page[0]
		}
		require.Equal(t, want, back)
		var fwd []int64
		params = &apiclient.ListMessagesParams{Limit: &limit, AfterSeq: rrPtr(int64(0))}
		for {
			res, err := ann.Client.ListMessagesWithResponse(ctx, room, params)
			require.NoError(t, err)
			for _, m := range res.JSON200.Items {
				fwd = append(fwd, m.Seq)
			}
			if !res.JSON200.HasMore {
				break
			}
			params.AfterSeq = &fwd[len(fwd)-1]
		}
		require.Equal(t, want, fwd)
	})
}

func TestRoomRulesPublicSearch(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann := s.Register(t, "ann")
	ids := map[string]uuid.UUID{}
	for _, n := range []string{"Alpha", "alpine", "ALPS", "Al", "Beta", "100% real", "1000 cuts", "a_b", "axb", "x\\y", "xay"} {
		ids[n] = parlortest.CreateRoom(t, ann, n, apiclient.VisibilityPublic).Id
	}
	parlortest.CreateRoom(t, ann, "alpha secret", apiclient.VisibilityPrivate)
	gone := parlortest.CreateRoom(t, ann, "alpha gone", apiclient.VisibilityPublic)
	s.AsOK(t, ann, 204, "DELETE", rrRoomPath(gone.Id, ""), "")

	cases := []struct {
		q    string
		want []string
	}{
		{"alp", []string{"Alpha", "alpine", "ALPS"}},
		{"ALP", []string{"Alpha", "alpine", "ALPS"}},
		{"al", []string{"Al", "Alpha", "alpine", "ALPS"}},
		{"alpha", []string{"Alpha"}},
		{"100%", []string{"100% real"}},
		{"%", nil},
		{"a_", []string{"a_b"}},
		{"_", nil},
		{"x\\", []string{"x\\y"}},
		{"lpha", nil},
		{"zzz", nil},
	}
	for _, tc := range cases {
		t.Run(tc.q, func(t *testing.T) {
			scope := apiclient.ListRoomsParamsScopePublic
			res, err := ann.Client.ListRoomsWithResponse(ctx, &apiclient.ListRoomsParams{Scope: &scope, Q: &tc.q})
			require.NoError(t, err)
			require.Equal(t, 200, res.StatusCode(), string(res.Body))
			var got []string
			for _, r := range res.JSON200.Items {
				require.Equal(t, ids[r.Name], r.Id)
				got = append(got, r.Name)
			}
			require.Equal(t, tc.want, got)
			require.Nil(t, res.JSON200.NextCursor)
		})
	}
}

// TestRoomRulesUnreadCountModel drives several members through sends, deletes, edits,
// reactions and read markers in a random (seeded) order, keeps its own model of every
// member's read marker and unread count, and compares it with what the API says after
// every step.
func TestRoomRulesUnreadCountModel(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	users := []*parlortest.User{s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "cat"), s.Register(t, "dan")}
	type msg struct {
		id      uuid.UUID
		seq     int64
		author  int
		deleted bool
	}
	type model struct {
		id      uuid.UUID
		owner   int
		lastSeq int64
		msgs    []*msg
		read    []int64
		reacted map[string]bool
	}
	var rooms []*model
	for owner := 0; owner < 2; owner++ {
		r := parlortest.CreateRoom(t, users[owner], fmt.Sprintf("unread %d", owner), apiclient.VisibilityPublic)
		m := &model{id: r.Id, owner: owner, lastSeq: r.LastSeq, read: make([]int64, len(users)), reacted: map[string]bool{}}
		// A member's read marker starts at their own join.
		m.read[owner] = r.LastSeq
		for i, u := range users {
			if i != owner {
				rrJoin(t, s, u, r.Id)
				m.lastSeq++
				m.read[i] = m.lastSeq
			}
		}
		rooms = append(rooms, m)
	}
	unread := func(r *model, u int) int64 {
		var n int64
		for _, m := range r.msgs {
			if m.seq > r.read[u] && m.author != u && !m.deleted {
				n++
			}
		}
		return n
	}
	check := func(step int, what string) {
		t.Helper()
		for ui, u := range users {
			scope := apiclient.ListRoomsParamsScopeJoined
			res, err := u.Client.ListRoomsWithResponse(ctx, &apiclient.ListRoomsParams{Scope: &scope})
			require.NoError(t, err)
			require.Equal(t, 200, res.StatusCode(), string(res.Body))
			require.Len(t, res.JSON200.Items, len(rooms))
			for ri, r := range rooms {
				got := res.JSON200.Items[ri]
				require.Equal(t, r.id, got.Id)
				require.Equal(t, r.lastSeq, got.LastSeq, "step %d (%s): room %d last_seq", step, what, ri)
				require.Equal(t, r.read[ui], got.Membership.ReadSeq, "step %d (%s): user %d room %d read_seq", step, what, ui, ri)
				require.Equal(t, unread(r, ui), got.Membership.UnreadCount, "step %d (%s): user %d room %d unread in the list", step, what, ui, ri)
			}
		}
	}
	checkRoom := func(step int, what string, r *model) {
		t.Helper()
		for ui, u := range users {
			got := rrGetRoom(t, u, r.id)
			require.Equal(t, unread(r, ui), got.Membership.UnreadCount, "step %d (%s): user %d unread in GET room", step, what, ui)
			require.Equal(t, r.read[ui], got.Membership.ReadSeq, "step %d (%s): user %d read_seq in GET room", step, what, ui)
		}
	}
	live := func(r *model, rnd *rand.Rand) *msg {
		var ms []*msg
		for _, m := range r.msgs {
			if !m.deleted {
				ms = append(ms, m)
			}
		}
		if len(ms) == 0 {
			return nil
		}
		return ms[rnd.Intn(len(ms))]
	}

	const seed, steps = 20240611, 60
	rnd := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)
	check(0, "start")
	for step := 1; step <= steps; step++ {
		r := rooms[rnd.Intn(len(rooms))]
		ui := rnd.Intn(len(users))
		u := users[ui]
		var what string
		switch op := rnd.Intn(100); {
		case op < 45 || len(r.msgs) == 0:
			m := parlortest.Send(t, u, r.id, fmt.Sprintf("step %d", step))
			r.lastSeq++
			require.Equal(t, r.lastSeq, m.Seq, "step %d: a message's seq is not the room's next", step)
			r.msgs = append(r.msgs, &msg{id: m.Id, seq: m.Seq, author: ui})
			what = fmt.Sprintf("user %d sends", ui)
		case op < 60:
			m := live(r, rnd)
			if m == nil {
				m = r.msgs[rnd.Intn(len(r.msgs))] // all deleted: deleting again changes nothing
			}
			actor := m.author
			if rnd.Intn(2) == 0 {
				actor = r.owner // the room's owner may delete anyone's message
			}
			s.AsOK(t, users[actor], 204, "DELETE", rrRoomPath(r.id, "/messages/"+m.id.String()), "")
			if !m.deleted {
				m.deleted = true
				r.lastSeq++
			}
			what = fmt.Sprintf("user %d deletes seq %d by user %d", actor, m.seq, m.author)
		case op < 88:
			seq := r.lastSeq
			if rnd.Intn(3) == 0 {
				seq = rnd.Int63n(r.lastSeq + 1)
			}
			res, err := u.Client.MarkReadWithResponse(ctx, r.id, apiclient.MarkReadJSONRequestBody{Seq: seq})
			require.NoError(t, err)
			require.Equal(t, 200, res.StatusCode(), string(res.Body))
			if seq > r.read[ui] {
				r.read[ui] = seq
				r.lastSeq++
			}
			require.Equal(t, r.read[ui], res.JSON200.ReadSeq, "step %d: read_seq after marking %d", step, seq)
			require.Equal(t, unread(r, ui), res.JSON200.UnreadCount, "step %d: unread after marking %d", step, seq)
			what = fmt.Sprintf("user %d marks %d read", ui, seq)
		case op < 95:
			m := live(r, rnd)
			if m == nil {
				continue
			}
			emoji := []string{"👍", "🎉", "+1"}[rnd.Intn(3)]
			s.AsOK(t, u, 204, "PUT", rrRoomPath(r.id, "/messages/"+m.id.String()+"/reactions/"+url.PathEscape(emoji)), "")
			key := fmt.Sprintf("%s/%d/%s", m.id, ui, emoji)
			if !r.reacted[key] {
				r.reacted[key] = true
				r.lastSeq++
			}
			what = fmt.Sprintf("user %d reacts to seq %d", ui, m.seq)
		default:
			var mine []*msg
			for _, m := range r.msgs {
				if m.author == ui && !m.deleted {
					mine = append(mine, m)
				}
			}
			if len(mine) == 0 {
				continue
			}
			m := mine[rnd.Intn(len(mine))]
			s.AsOK(t, u, 200, "PATCH", rrRoomPath(r.id, "/messages/"+m.id.String()), parlortest.JSON(map[string]string{"body": fmt.Sprintf("edited at %d", step)}))
			r.lastSeq++
			what = fmt.Sprintf("user %d edits seq %d", ui, m.seq)
		}
		check(step, what)
		if step%5 == 0 {
			checkRoom(step, what, r)
		}
	}
	// The fresh-sync summary agrees too.
	for ui, u := range users {
		res, err := u.Client.SyncWithResponse(ctx, &apiclient.SyncParams{})
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode(), string(res.Body))
		require.NotNil(t, res.JSON200.Rooms)
		require.Len(t, *res.JSON200.Rooms, len(rooms))
		for ri, r := range rooms {
			got := (*res.JSON200.Rooms)[ri]
			require.Equal(t, r.id, got.Id)
			require.Equal(t, unread(r, ui), got.Membership.UnreadCount, "user %d room %d unread in the sync summary", ui, ri)
		}
	}
}
