// API1:2023 Broken Object Level Authorization.
//
// For Parlor the objects are rooms and everything in them (messages, members, reactions,
// bans, invites, presence, tips, read markers) and each user's top-ups. The rule is deny by
// default: a user who is not a member of a room gets 404 for everything in it — the very
// answer a room that does not exist gets — except seeing and joining a public room; ids come
// from the path, never from the body; another user's top-up is a 404.
//
// This file proves it: TestEveryOperationHasAnObjectLevelRule walks every operation of
// api/openapi.yaml and fails when one that takes an object id is not covered by the matrix
// or a named test; TestAuthzMatrix calls every room-scoped operation as owner, moderator,
// member, outsider, banned user and invitee in a public and a private room;
// TestAuthzIDsComeFromThePath reaches one room's objects through another room's path;
// TestAnotherUsersTopupIsNotFound reads a top-up as someone else.
package owasp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

var ctx = context.Background()

// azActor is a class of caller in the authorization matrix.
type azActor int

const (
	azOwner azActor = iota
	azModerator
	azMember
	azOutsider // a registered user with nothing to do with the room
	azBanned   // banned from the room (never a member)
	azInvitee  // invited to the room (only private rooms take invitations)
	azActors
)

var azActorNames = [azActors]string{"owner", "moderator", "member", "outsider", "banned", "invitee"}

// azSet is a set of actors.
type azSet uint

func (s azSet) has(a azActor) bool { return s&(1<<a) != 0 }

const (
	azStaff   = azSet(1<<azOwner | 1<<azModerator)
	azMembers = azStaff | 1<<azMember
)

// azRoom is a room with one user of each class, built by newAZRoom.
type azRoom struct {
	id        uuid.UUID
	memberMsg uuid.UUID // sent by the member, who reacted 👍 to it
	modMsg    uuid.UUID // sent by the moderator
	lastSeq   int64
}

// newAZRoom builds a room of the given visibility: users[azOwner] owns it, the moderator
// and the member are members (the moderator promoted by the owner), the member and the
// moderator each sent a message, the member reacted 👍 to theirs, users[azBanned] is banned
// and — in a private room — users[azInvitee] is invited.
func newAZRoom(t *testing.T, s *parlortest.Server, users [azActors]*parlortest.User, vis apiclient.Visibility) *azRoom {
	t.Helper()
	o, mod, mem := users[azOwner], users[azModerator], users[azMember]
	room := parlortest.CreateRoom(t, o, "matrix "+string(vis), vis)
	base := "/v1/rooms/" + room.Id.String()
	if vis == apiclient.VisibilityPrivate {
		for _, a := range []azActor{azModerator, azMember, azInvitee} {
			s.AsOK(t, o, 201, "POST", base+"/invites", parlortest.JSON(map[string]any{"user_id": users[a].ID}))
		}
	}
	s.AsOK(t, mod, 200, "POST", base+"/join", "")
	s.AsOK(t, mem, 200, "POST", base+"/join", "")
	s.AsOK(t, o, 200, "PUT", base+"/members/"+mod.ID.String(), `{"role":"moderator"}`)
	r := &azRoom{id: room.Id}
	r.memberMsg = parlortest.Send(t, mem, room.Id, "a member's message").Id
	r.modMsg = parlortest.Send(t, mod, room.Id, "a moderator's message").Id
	s.AsOK(t, mem, 204, "PUT", base+"/messages/"+r.memberMsg.String()+"/reactions/"+url.PathEscape("👍"), "")
	s.AsOK(t, o, 201, "POST", base+"/bans", parlortest.JSON(map[string]any{"user_id": users[azBanned].ID}))
	var got apiclient.Room
	require.NoError(t, json.Unmarshal(s.AsOK(t, o, 200, "GET", base, ""), &got))
	r.lastSeq = got.LastSeq
	return r
}

// azWant is the expected answer: a success status, or a problem status and code.
type azWant struct {
	status int
	code   string
}

var (
	az200       = azWant{200, ""}
	az201       = azWant{201, ""}
	az204       = azWant{204, ""}
	azForbidden = azWant{403, "forbidden"}
	azNotFound  = azWant{404, "not_found"}
	azConflict  = azWant{409, "conflict"}
	azIsBanned  = azWant{403, "banned"}
	azInvalid   = azWant{400, "invalid_request"}
)

// azCase is one room-scoped endpoint and what each actor gets from it, in a public and in
// a private room (columns: owner, moderator, member, outsider, banned, invitee).
type azCase struct {
	name            string
	method          string
	route           string // the contract's path template
	path            func(r *azRoom, u [azActors]*parlortest.User) string
	body            func(r *azRoom, u [azActors]*parlortest.User) string
	public, private [azActors]azWant
	// writes lists the actors whose success changes the room; they run on a fresh room and
	// must change it. Every other answer must leave the room exactly as it was.
	writes azSet
	// then, when set, checks what the actor's success means for the room's users.
	then func(t *testing.T, s *parlortest.Server, r *azRoom, u [azActors]*parlortest.User, actor azActor)
}

// azGets asserts what u gets from GET path.
func azGets(t *testing.T, s *parlortest.Server, u *parlortest.User, path string, want azWant) {
	t.Helper()
	res, b := s.As(t, u, "GET", path, "")
	if want.code == "" {
		require.Equal(t, want.status, res.StatusCode, string(b))
		return
	}
	parlortest.RequireProblem(t, res, b, want.status, want.code)
}

func azRoomPath(suffix string) func(r *azRoom, u [azActors]*parlortest.User) string {
	return func(r *azRoom, _ [azActors]*parlortest.User) string { return "/v1/rooms/" + r.id.String() + suffix }
}

func azConstBody(b string) func(*azRoom, [azActors]*parlortest.User) string {
	return func(*azRoom, [azActors]*parlortest.User) string { return b }
}

func azCases() []azCase {
	all := func(w azWant) [azActors]azWant { return [azActors]azWant{w, w, w, azNotFound, azNotFound, azNotFound} }
	staff := func(w azWant) [azActors]azWant {
		return [azActors]azWant{w, w, azForbidden, azNotFound, azNotFound, azNotFound}
	}
	member := func(r *azRoom, u [azActors]*parlortest.User) string {
		return "/v1/rooms/" + r.id.String() + "/members/" + u[azMember].ID.String()
	}
	msg := func(pick func(r *azRoom) uuid.UUID, suffix string) func(r *azRoom, u [azActors]*parlortest.User) string {
		return func(r *azRoom, _ [azActors]*parlortest.User) string {
			return "/v1/rooms/" + r.id.String() + "/messages/" + pick(r).String() + suffix
		}
	}
	memberMsg := func(r *azRoom) uuid.UUID { return r.memberMsg }
	modMsg := func(r *azRoom) uuid.UUID { return r.modMsg }
	return []azCase{
		{
			name: "get room", method: "GET", route: "/v1/rooms/{room_id}", path: azRoomPath(""),
			public:  [azActors]azWant{az200, az200, az200, az200, az200, az200},
			private: [azActors]azWant{az200, az200, az200, azNotFound, azNotFound, az200},
		},
		{
			name: "change name, topic and slow mode", method: "PATCH", route: "/v1/rooms/{room_id}", path: azRoomPath(""),
			body:   azConstBody(`{"name":"renamed","topic":"new topic","slow_mode_seconds":5}`),
			public: staff(az200), private: staff(az200), writes: azStaff,
		},
		{
			name: "archive", method: "PATCH", route: "/v1/rooms/{room_id}", path: azRoomPath(""), body: azConstBody(`{"archived":true}`),
			public:  [azActors]azWant{az200, azForbidden, azForbidden, azNotFound, azNotFound, azNotFound},
			private: [azActors]azWant{az200, azForbidden, azForbidden, azNotFound, azNotFound, azNotFound},
			writes:  azStaff,
		},
		{
			name: "delete room", method: "DELETE", route: "/v1/rooms/{room_id}", path: azRoomPath(""),
			public:  [azActors]azWant{az204, azForbidden, azForbidden, azNotFound, azNotFound, azNotFound},
			private: [azActors]azWant{az204, azForbidden, azForbidden, azNotFound, azNotFound, azNotFound},
			writes:  azStaff,
			then: func(t *testing.T, s *parlortest.Server, r *azRoom, u [azActors]*parlortest.User, _ azActor) {
				for _, a := range []azActor{azOwner, azMember, azOutsider} {
					azGets(t, s, u[a], "/v1/rooms/"+r.id.String(), azNotFound)
				}
				azGets(t, s, u[azMember], "/v1/rooms/"+r.id.String()+"/messages", azNotFound)
			},
		},
		{
			// Members joining again change nothing; the banned cannot join a public room,
			// and a private room stays invisible to all but its invitees.
			name: "join", method: "POST", route: "/v1/rooms/{room_id}/join", path: azRoomPath("/join"),
			public:  [azActors]azWant{az200, az200, az200, az200, azIsBanned, az200},
			private: [azActors]azWant{az200, az200, az200, azNotFound, azNotFound, az200},
			writes:  1<<azOutsider | 1<<azInvitee,
			then: func(t *testing.T, s *parlortest.Server, r *azRoom, u [azActors]*parlortest.User, actor azActor) {
				azGets(t, s, u[actor], "/v1/rooms/"+r.id.String()+"/messages", az200)
			},
		},
		{
			name: "leave", method: "POST", route: "/v1/rooms/{room_id}/leave", path: azRoomPath("/leave"),
			public:  [azActors]azWant{azConflict, az204, az204, azNotFound, azNotFound, azNotFound},
			private: [azActors]azWant{azConflict, az204, az204, azNotFound, azNotFound, azNotFound},
			writes:  azMembers,
			then: func(t *testing.T, s *parlortest.Server, r *azRoom, u [azActors]*parlortest.User, actor azActor) {
				azGets(t, s, u[actor], "/v1/rooms/"+r.id.String()+"/messages", azNotFound)
			},
		},
		{
			name: "list members", method: "GET", route: "/v1/rooms/{room_id}/members", path: azRoomPath("/members"),
			public: all(az200), private: all(az200),
		},
		{
			name: "mute a member", method: "PUT", route: "/v1/rooms/{room_id}/members/{user_id}", path: member,
			body: func(*azRoom, [azActors]*parlortest.User) string {
				return parlortest.JSON(map[string]any{"muted_until": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
			},
			public: staff(az200), private: staff(az200), writes: azStaff,
		},
		{
			name: "kick a member", method: "DELETE", route: "/v1/rooms/{room_id}/members/{user_id}", path: member,
			public: staff(az204), private: staff(az204), writes: azStaff,
			then: func(t *testing.T, s *parlortest.Server, r *azRoom, u [azActors]*parlortest.User, _ azActor) {
				azGets(t, s, u[azMember], "/v1/rooms/"+r.id.String()+"/messages", azNotFound)
			},
		},
		{
			// Invitations are for private rooms only.
			name: "invite", method: "POST", route: "/v1/rooms/{room_id}/invites", path: azRoomPath("/invites"),
			body: func(_ *azRoom, u [azActors]*parlortest.User) string {
				return parlortest.JSON(map[string]any{"user_id": u[azOutsider].ID})
			},
			public: staff(azConflict), private: staff(az201), writes: azStaff,
		},
		{
			name: "ban a member", method: "POST", route: "/v1/rooms/{room_id}/bans", path: azRoomPath("/bans"),
			body: func(_ *azRoom, u [azActors]*parlortest.User) string {
				return parlortest.JSON(map[string]any{"user_id": u[azMember].ID, "reason": "spam"})
			},
			public: staff(az201), private: staff(az201), writes: azStaff,
			then: func(t *testing.T, s *parlortest.Server, r *azRoom, u [azActors]*parlortest.User, _ azActor) {
				azGets(t, s, u[azMember], "/v1/rooms/"+r.id.String()+"/messages", azNotFound)
			},
		},
		{
			name: "unban", method: "DELETE", route: "/v1/rooms/{room_id}/bans/{user_id}",
			path: func(r *azRoom, u [azActors]*parlortest.User) string {
				return "/v1/rooms/" + r.id.String() + "/bans/" + u[azBanned].ID.String()
			},
			public: staff(az204), private: staff(az204), writes: azStaff,
		},
		{
			name: "send a message", method: "POST", route: "/v1/rooms/{room_id}/messages", path: azRoomPath("/messages"),
			body:   func(*azRoom, [azActors]*parlortest.User) string { return parlortest.SendBody("hello") },
			public: all(az201), private: all(az201), writes: azMembers,
		},
		{
			name: "read history", method: "GET", route: "/v1/rooms/{room_id}/messages", path: azRoomPath("/messages"),
			public: all(az200), private: all(az200),
		},
		{
			// Only the author edits, whatever the role.
			name: "edit the member's message", method: "PATCH", route: "/v1/rooms/{room_id}/messages/{message_id}", path: msg(memberMsg, ""),
			body:    azConstBody(`{"body":"edited"}`),
			public:  [azActors]azWant{azForbidden, azForbidden, az200, azNotFound, azNotFound, azNotFound},
			private: [azActors]azWant{azForbidden, azForbidden, az200, azNotFound, azNotFound, azNotFound},
			writes:  azMembers,
		},
		{
			name: "delete the member's message", method: "DELETE", route: "/v1/rooms/{room_id}/messages/{message_id}", path: msg(memberMsg, ""),
			public: all(az204), private: all(az204), writes: azMembers,
		},
		{
			// A plain member may not delete someone else's message.
			name: "delete the moderator's message", method: "DELETE", route: "/v1/rooms/{room_id}/messages/{message_id}", path: msg(modMsg, ""),
			public: staff(az204), private: staff(az204), writes: azStaff,
		},
		{
			name: "react", method: "PUT", route: "/v1/rooms/{room_id}/messages/{message_id}/reactions/{emoji}", path: msg(memberMsg, "/reactions/"+url.PathEscape("🎉")),
			public: all(az204), private: all(az204), writes: azMembers,
		},
		{
			// Only the member's own 👍 is there to take back; for the others it is a no-op.
			name: "take a reaction back", method: "DELETE", route: "/v1/rooms/{room_id}/messages/{message_id}/reactions/{emoji}", path: msg(memberMsg, "/reactions/"+url.PathEscape("👍")),
			public: all(az204), private: all(az204), writes: 1 << azMember,
		},
		{
			name: "presence", method: "GET", route: "/v1/rooms/{room_id}/presence", path: azRoomPath("/presence"),
			public: all(az200), private: all(az200),
		},
		{
			// Every tip goes to the owner, who cannot tip themselves.
			name: "tip the owner", method: "POST", route: "/v1/rooms/{room_id}/tips", path: azRoomPath("/tips"),
			body: func(_ *azRoom, u [azActors]*parlortest.User) string {
				return parlortest.JSON(map[string]any{"recipient_id": u[azOwner].ID, "amount": 1})
			},
			public:  [azActors]azWant{azInvalid, az201, az201, azNotFound, azNotFound, azNotFound},
			private: [azActors]azWant{azInvalid, az201, az201, azNotFound, azNotFound, azNotFound},
			writes:  1<<azModerator | 1<<azMember,
		},
		{
			name: "mark read", method: "POST", route: "/v1/rooms/{room_id}/read", path: azRoomPath("/read"),
			body: func(r *azRoom, _ [azActors]*parlortest.User) string {
				return parlortest.JSON(map[string]any{"seq": r.lastSeq})
			},
			public: all(az200), private: all(az200), writes: azMembers,
		},
	}
}

// TestAuthzMatrix calls every room-scoped endpoint as every class of caller, in a public and
// in a private room. Rejections leave the room untouched (and a non-member's 404 is the very
// answer a room that does not exist gets); successes that write run on a fresh room each and
// must show their effect.
func TestAuthzMatrix(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	var users [azActors]*parlortest.User
	for a := range azActors {
		users[a] = s.Register(t, azActorNames[a])
		s.Grant(t, users[a], 1000) // for tips
	}
	// Rows of operations the contract does not (yet) have are skipped; that every
	// room-scoped operation has a row is TestEveryOperationHasAnObjectLevelRule's to prove.
	inContract := map[string]bool{}
	for _, op := range contractOperations(t) {
		inContract[op.key()] = true
	}

	for _, vis := range []apiclient.Visibility{apiclient.VisibilityPublic, apiclient.VisibilityPrivate} {
		shared := newAZRoom(t, s, users, vis)
		for _, tc := range azCases() {
			if !inContract[tc.method+" "+tc.route] {
				t.Logf("skipping %s %s: not in the contract", tc.method, tc.route)
				continue
			}
			wants := tc.public
			if vis == apiclient.VisibilityPrivate {
				wants = tc.private
			}
			for a := range azActors {
				want := wants[a]
				t.Run(fmt.Sprintf("%s/%s/%s", vis, tc.name, azActorNames[a]), func(t *testing.T) {
					body := func(r *azRoom) string {
						if tc.body == nil {
							return ""
						}
						return tc.body(r, users)
					}
					if want.status < 300 && tc.writes.has(a) {
						t.Parallel()
						r := newAZRoom(t, s, users, vis)
						before := s.RoomState(t, r.id)
						s.AsOK(t, users[a], want.status, tc.method, tc.path(r, users), body(r))
						after := s.RoomState(t, r.id)
						require.NotEqual(t, before, after, "a successful request changed nothing")
						require.Greater(t, after.LastSeq, before.LastSeq, "a change in the room is an event")
						if tc.then != nil {
							tc.then(t, s, r, users, a)
						}
						return
					}
					before := s.RoomState(t, shared.id)
					res, b := s.As(t, users[a], tc.method, tc.path(shared, users), body(shared))
					if want.status < 300 {
						require.Equal(t, want.status, res.StatusCode, string(b))
						if tc.method == "GET" && tc.name == "get room" && a >= azOutsider {
							require.NotContains(t, string(b), `"membership"`, "a non-member is shown a membership")
						}
					} else {
						p := parlortest.RequireProblem(t, res, b, want.status, want.code)
						if want.status == http.StatusNotFound {
							// Indistinguishable from a room that does not exist.
							ghost := *shared
							ghost.id = uuid.New()
							gres, gb := s.As(t, users[a], tc.method, tc.path(&ghost, users), body(&ghost))
							gp := parlortest.RequireProblem(t, gres, gb, 404, "not_found")
							require.Equal(t, gp.Detail, p.Detail, "the 404 reveals that the room exists")
						}
					}
					require.Equal(t, before, s.RoomState(t, shared.id), "the room changed")
				})
			}
		}
	}
}

// TestAuthzIDsComeFromThePath: a message or member of one room cannot be reached through
// the path of another room, even by someone with rights in both.
func TestAuthzIDsComeFromThePath(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob, carl := s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "carl")
	// ann owns both rooms; bob moderates A only; carl is a member of B only.
	a := parlortest.CreateRoom(t, ann, "room a", apiclient.VisibilityPublic)
	b := parlortest.CreateRoom(t, ann, "room b", apiclient.VisibilityPrivate)
	s.AsOK(t, bob, 200, "POST", "/v1/rooms/"+a.Id.String()+"/join", "")
	s.AsOK(t, ann, 200, "PUT", "/v1/rooms/"+a.Id.String()+"/members/"+bob.ID.String(), `{"role":"moderator"}`)
	s.AsOK(t, ann, 201, "POST", "/v1/rooms/"+b.Id.String()+"/invites", parlortest.JSON(map[string]any{"user_id": carl.ID}))
	s.AsOK(t, carl, 200, "POST", "/v1/rooms/"+b.Id.String()+"/join", "")
	inA := parlortest.Send(t, ann, a.Id, "in room a")
	inB := parlortest.Send(t, carl, b.Id, "in room b")

	aPath := "/v1/rooms/" + a.Id.String()
	bMsgViaA := aPath + "/messages/" + inB.Id.String()
	cases := []struct {
		name         string
		as           *parlortest.User
		method, path string
		body         string
		want         azWant
	}{
		{"owner deletes B's message through A", ann, "DELETE", bMsgViaA, "", azNotFound},
		{"moderator deletes B's message through A", bob, "DELETE", bMsgViaA, "", azNotFound},
		{"author edits their B message through A", carl, "PATCH", "/v1/rooms/" + b.Id.String() + "/messages/" + inA.Id.String(), `{"body":"x"}`, azNotFound},
		{"owner edits B's message through A", ann, "PATCH", bMsgViaA, `{"body":"hijacked"}`, azNotFound},
		{"moderator reacts to B's message through A", bob, "PUT", bMsgViaA + "/reactions/x", "", azNotFound},
		{"moderator unreacts to B's message through A", bob, "DELETE", bMsgViaA + "/reactions/x", "", azNotFound},
		{"moderator kicks B's member through A", bob, "DELETE", aPath + "/members/" + carl.ID.String(), "", azNotFound},
		{"moderator mutes B's member through A", bob, "PUT", aPath + "/members/" + carl.ID.String(), parlortest.JSON(map[string]any{"muted_until": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}), azNotFound},
		{"reply in A to B's message", bob, "POST", aPath + "/messages", parlortest.JSON(map[string]any{"client_msg_id": uuid.NewString(), "body": "re", "reply_to": inB.Id}), azWant{400, "invalid_request"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			beforeA, beforeB := s.RoomState(t, a.Id), s.RoomState(t, b.Id)
			res, body := s.As(t, tc.as, tc.method, tc.path, tc.body)
			parlortest.RequireProblem(t, res, body, tc.want.status, tc.want.code)
			require.Equal(t, beforeA, s.RoomState(t, a.Id), "room A changed")
			require.Equal(t, beforeB, s.RoomState(t, b.Id), "room B changed")
		})
	}
	// B's message is intact as its members see it.
	hist, err := carl.Client.ListMessagesWithResponse(ctx, b.Id, &apiclient.ListMessagesParams{})
	require.NoError(t, err)
	require.Equal(t, 200, hist.StatusCode(), string(hist.Body))
	require.Len(t, hist.JSON200.Items, 1)
	require.Equal(t, "in room b", *hist.JSON200.Items[0].Body)
	require.Nil(t, hist.JSON200.Items[0].EditedAt)
	require.Empty(t, hist.JSON200.Items[0].Reactions)
}

// objectRules names, for each operation that takes an object id in its path and is not
// room-scoped (those are the matrix's rows), the test that proves the caller may touch only
// their own objects.
var objectRules = map[string]string{
	"GET /v1/wallet/topups/{topup_id}":                  "TestAnotherUsersTopupIsNotFound",
	"POST /v1/admin/topups/{topup_id}/refund":           "TestEveryAdminOperationRefusesEveryoneElse (API5)",
	"GET /v1/admin/users/{user_id}/wallet":              "TestEveryAdminOperationRefusesEveryoneElse (API5)",
	"GET /v1/admin/topups/{topup_id}":                   "TestEveryAdminOperationRefusesEveryoneElse (API5)",
	"POST /v1/admin/users/{user_id}/wallet/adjustments": "TestEveryAdminOperationRefusesEveryoneElse (API5)",
}

// TestEveryOperationHasAnObjectLevelRule: a new endpoint cannot be missed. Every operation
// of the contract that names an object in its path is either room-scoped and a row of the
// authorization matrix, or listed in objectRules with the test that proves it; an
// operation without a path parameter acts on the caller alone and may not take an object
// id in its query either.
func TestEveryOperationHasAnObjectLevelRule(t *testing.T) {
	t.Parallel()
	rows := map[string]bool{}
	for _, tc := range azCases() {
		rows[tc.method+" "+tc.route] = true
	}
	seen := map[string]bool{}
	for _, op := range contractOperations(t) {
		seen[op.key()] = true
		switch {
		case strings.HasPrefix(op.path, "/v1/rooms/{room_id}"):
			require.True(t, rows[op.key()], "the authorization matrix has no row for %s", op.key())
		case len(op.params(openapi3.ParameterInPath)) > 0:
			require.Contains(t, objectRules, op.key(), "%s takes an object id in its path: add it to the matrix or to objectRules with a test", op.key())
		default:
			for _, p := range op.params(openapi3.ParameterInQuery) {
				require.False(t, strings.HasSuffix(p, "_id"), "%s takes an object id (%s) in its query: it needs an object-level rule", op.key(), p)
			}
		}
	}
	for key := range objectRules {
		require.True(t, seen[key], "objectRules names %s, which the contract does not have", key)
	}
	for key := range rows {
		require.True(t, seen[key], "the matrix has a row for %s, which the contract does not have", key)
	}
}

// TestAnotherUsersTopupIsNotFound: a top-up is its buyer's alone; anyone else reading it
// gets the very 404 an id that does not exist gets, and learns nothing of it.
func TestAnotherUsersTopupIsNotFound(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	bob, eve := s.Register(t, "bob"), s.Register(t, "eve")
	tp := parlortest.CreateTopup(t, bob, "small")

	res, body := s.As(t, eve, "GET", "/v1/wallet/topups/"+tp.Id.String(), "")
	p := parlortest.RequireProblem(t, res, body, 404, "not_found")
	require.NotContains(t, string(body), tp.CheckoutUrl)
	ghostRes, ghostBody := s.As(t, eve, "GET", "/v1/wallet/topups/"+uuid.NewString(), "")
	ghost := parlortest.RequireProblem(t, ghostRes, ghostBody, 404, "not_found")
	require.Equal(t, ghost.Detail, p.Detail, "the 404 reveals that the top-up exists")

	// Nor does it show in eve's wallet; bob still reads it.
	w, err := eve.Client.GetWalletWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(0), w.JSON200.PendingTopups)
	require.Equal(t, tp.Id, parlortest.GetTopup(t, bob, tp.Id).Id)
}
