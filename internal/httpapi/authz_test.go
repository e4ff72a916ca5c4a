package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

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

// azReq sends an authenticated raw request as u (body "" sends none).
func azReq(t *testing.T, s *parlortest.Server, u *parlortest.User, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	// Money-moving POSTs need an Idempotency-Key; every other operation ignores it.
	h := http.Header{"Authorization": {"Bearer " + u.AccessToken}, "Idempotency-Key": {uuid.NewString()}}
	if body == "" {
		return s.Do(t, method, path, "", nil, h)
	}
	return s.Do(t, method, path, "application/json", strings.NewReader(body), h)
}

// azOK sends a request that must succeed with status.
func azOK(t *testing.T, s *parlortest.Server, u *parlortest.User, status int, method, path, body string) []byte {
	t.Helper()
	res, b := azReq(t, s, u, method, path, body)
	require.Equal(t, status, res.StatusCode, "%s %s: %s", method, path, b)
	return b
}

func azJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func azSendBody(text string) string {
	return azJSON(map[string]string{"client_msg_id": uuid.NewString(), "body": text})
}

// newAZRoom builds a room of the given visibility: users[azOwner] owns it, the moderator
// and the member are members (the moderator promoted by the owner), the member and the
// moderator each sent a message, the member reacted 👍 to theirs, users[azBanned] is banned
// and — in a private room — users[azInvitee] is invited.
func newAZRoom(t *testing.T, s *parlortest.Server, users [azActors]*parlortest.User, vis apiclient.Visibility) *azRoom {
	t.Helper()
	o, mod, mem := users[azOwner], users[azModerator], users[azMember]
	room := createRoom(t, o, "matrix "+string(vis), vis)
	base := "/v1/rooms/" + room.Id.String()
	if vis == apiclient.VisibilityPrivate {
		for _, a := range []azActor{azModerator, azMember, azInvitee} {
			azOK(t, s, o, 201, "POST", base+"/invites", azJSON(map[string]any{"user_id": users[a].ID}))
		}
	}
	azOK(t, s, mod, 200, "POST", base+"/join", "")
	azOK(t, s, mem, 200, "POST", base+"/join", "")
	azOK(t, s, o, 200, "PUT", base+"/members/"+mod.ID.String(), `{"role":"moderator"}`)
	r := &azRoom{id: room.Id}
	r.memberMsg = send(t, mem, room.Id, "a member's message").Id
	r.modMsg = send(t, mod, room.Id, "a moderator's message").Id
	azOK(t, s, mem, 204, "PUT", base+"/messages/"+r.memberMsg.String()+"/reactions/"+url.PathEscape("👍"), "")
	azOK(t, s, o, 201, "POST", base+"/bans", azJSON(map[string]any{"user_id": users[azBanned].ID}))
	var got apiclient.Room
	require.NoError(t, json.Unmarshal(azOK(t, s, o, 200, "GET", base, ""), &got))
	r.lastSeq = got.LastSeq
	return r
}

// azRoomState is everything about a room a rejected request must leave alone, read straight
// from the database.
type azRoomState struct {
	LastSeq, Events, Messages, Tombstones, Edited, Reactions, Bans, Invites int64
	MemberCount, SlowMode                                                   int
	Name, Topic, Members                                                    string
	Archived, Deleted                                                       bool
}

func azReadRoomState(t *testing.T, s *parlortest.Server, room uuid.UUID) azRoomState {
	t.Helper()
	var st azRoomState
	err := s.Pool.QueryRow(ctx, `
SELECT r.last_seq, r.member_count, r.name, r.topic, r.slow_mode_seconds,
       r.archived_at IS NOT NULL, r.deleted_at IS NOT NULL,
       (SELECT count(*) FROM room_events e WHERE e.room_id = r.id),
       (SELECT count(*) FROM messages m WHERE m.room_id = r.id),
       (SELECT count(*) FROM messages m WHERE m.room_id = r.id AND m.deleted_at IS NOT NULL),
       (SELECT count(*) FROM messages m WHERE m.room_id = r.id AND m.edited_at IS NOT NULL),
       (SELECT count(*) FROM reactions x JOIN messages m ON m.id = x.message_id WHERE m.room_id = r.id),
       (SELECT count(*) FROM room_bans b WHERE b.room_id = r.id),
       (SELECT count(*) FROM room_invites i WHERE i.room_id = r.id),
       (SELECT coalesce(string_agg(m.user_id::text || ':' || m.role || ':' || m.read_seq || ':' ||
                                   coalesce(m.muted_until::text, '-'), ',' ORDER BY m.user_id), '')
          FROM room_members m WHERE m.room_id = r.id)
FROM rooms r WHERE r.id = $1`, room).Scan(
		&st.LastSeq, &st.MemberCount, &st.Name, &st.Topic, &st.SlowMode, &st.Archived, &st.Deleted,
		&st.Events, &st.Messages, &st.Tombstones, &st.Edited, &st.Reactions, &st.Bans, &st.Invites, &st.Members)
	require.NoError(t, err)
	return st
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
	res, b := azReq(t, s, u, "GET", path, "")
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
				return azJSON(map[string]any{"muted_until": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
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
				return azJSON(map[string]any{"user_id": u[azOutsider].ID})
			},
			public: staff(azConflict), private: staff(az201), writes: azStaff,
		},
		{
			name: "ban a member", method: "POST", route: "/v1/rooms/{room_id}/bans", path: azRoomPath("/bans"),
			body: func(_ *azRoom, u [azActors]*parlortest.User) string {
				return azJSON(map[string]any{"user_id": u[azMember].ID, "reason": "spam"})
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
			body:   func(*azRoom, [azActors]*parlortest.User) string { return azSendBody("hello") },
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
				return azJSON(map[string]any{"recipient_id": u[azOwner].ID, "amount": 1})
			},
			public:  [azActors]azWant{azInvalid, az201, az201, azNotFound, azNotFound, azNotFound},
			private: [azActors]azWant{azInvalid, az201, az201, azNotFound, azNotFound, azNotFound},
			writes:  1<<azModerator | 1<<azMember,
		},
		{
			name: "mark read", method: "POST", route: "/v1/rooms/{room_id}/read", path: azRoomPath("/read"),
			body:   func(r *azRoom, _ [azActors]*parlortest.User) string { return azJSON(map[string]any{"seq": r.lastSeq}) },
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
		grant(t, s, users[a], 1000) // for tips
	}
	// Every room-scoped operation of the contract has a row; rows of operations the contract
	// does not (yet) have are skipped.
	spec, err := api.GetSpec()
	require.NoError(t, err)
	inContract := map[string]bool{}
	for path, item := range spec.Paths.Map() {
		if strings.HasPrefix(path, "/v1/rooms/{room_id}") {
			for method := range item.Operations() {
				inContract[method+" "+path] = true
			}
		}
	}
	covered := map[string]bool{}
	for _, tc := range azCases() {
		covered[tc.method+" "+tc.route] = true
	}
	for op := range inContract {
		require.True(t, covered[op], "the matrix has no row for %s", op)
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
						before := azReadRoomState(t, s, r.id)
						azOK(t, s, users[a], want.status, tc.method, tc.path(r, users), body(r))
						after := azReadRoomState(t, s, r.id)
						require.NotEqual(t, before, after, "a successful request changed nothing")
						require.Greater(t, after.LastSeq, before.LastSeq, "a change in the room is an event")
						if tc.then != nil {
							tc.then(t, s, r, users, a)
						}
						return
					}
					before := azReadRoomState(t, s, shared.id)
					res, b := azReq(t, s, users[a], tc.method, tc.path(shared, users), body(shared))
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
							gres, gb := azReq(t, s, users[a], tc.method, tc.path(&ghost, users), body(&ghost))
							gp := parlortest.RequireProblem(t, gres, gb, 404, "not_found")
							require.Equal(t, gp.Detail, p.Detail, "the 404 reveals that the room exists")
						}
					}
					require.Equal(t, before, azReadRoomState(t, s, shared.id), "the room changed")
				})
			}
		}
	}
}

// TestAuthzMassAssignment sends bodies with fields the caller may not set (ids, owners,
// roles, seqs): every one is a 400 and writes nothing.
func TestAuthzMassAssignment(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob, eve := s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "eve")
	room := createRoom(t, ann, "assign", apiclient.VisibilityPrivate)
	other := createRoom(t, eve, "elsewhere", apiclient.VisibilityPublic)
	base := "/v1/rooms/" + room.Id.String()
	azOK(t, s, ann, 201, "POST", base+"/invites", azJSON(map[string]any{"user_id": bob.ID}))
	azOK(t, s, bob, 200, "POST", base+"/join", "")
	msg := send(t, bob, room.Id, "bob's words")

	newID := uuid.NewString()
	mutedUntil := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	cases := []struct {
		name   string
		as     *parlortest.User
		method string
		path   string
		body   map[string]any
		field  string
	}{
		{"create room with owner_id", bob, "POST", "/v1/rooms", map[string]any{"name": "mine", "owner_id": eve.ID}, "owner_id"},
		{"create room with id", bob, "POST", "/v1/rooms", map[string]any{"name": "mine", "id": newID}, "id"},
		{"create room with role", bob, "POST", "/v1/rooms", map[string]any{"name": "mine", "role": "member"}, "role"},
		{"create room with last_seq", bob, "POST", "/v1/rooms", map[string]any{"name": "mine", "last_seq": 99}, "last_seq"},
		{"create room with archived", bob, "POST", "/v1/rooms", map[string]any{"name": "mine", "archived": true}, "archived"},
		{"change room owner", ann, "PATCH", base, map[string]any{"owner_id": bob.ID}, "owner_id"},
		{"change room owner with a name", ann, "PATCH", base, map[string]any{"name": "x", "owner_id": bob.ID}, "owner_id"},
		{"change room visibility", ann, "PATCH", base, map[string]any{"visibility": "public"}, "visibility"},
		{"change room entry price", ann, "PATCH", base, map[string]any{"entry_price": 5}, "entry_price"},
		{"change room id", ann, "PATCH", base, map[string]any{"topic": "x", "id": newID}, "id"},
		{"send as someone else", bob, "POST", base + "/messages", map[string]any{"client_msg_id": newID, "body": "hi", "author_id": ann.ID}, "author_id"},
		{"send into another room", bob, "POST", base + "/messages", map[string]any{"client_msg_id": newID, "body": "hi", "room_id": other.Id}, "room_id"},
		{"send with a seq", bob, "POST", base + "/messages", map[string]any{"client_msg_id": newID, "body": "hi", "seq": 1}, "seq"},
		{"send with an id", bob, "POST", base + "/messages", map[string]any{"client_msg_id": newID, "body": "hi", "id": newID}, "id"},
		{"edit with an author", bob, "PATCH", base + "/messages/" + msg.Id.String(), map[string]any{"body": "x", "author_id": ann.ID}, "author_id"},
		{"edit with a room", bob, "PATCH", base + "/messages/" + msg.Id.String(), map[string]any{"body": "x", "room_id": other.Id}, "room_id"},
		{"make an owner", ann, "PUT", base + "/members/" + bob.ID.String(), map[string]any{"role": "owner"}, "role"},
		{"update member with user_id", ann, "PUT", base + "/members/" + bob.ID.String(), map[string]any{"muted_until": mutedUntil, "user_id": eve.ID}, "user_id"},
		{"invite into another room", ann, "POST", base + "/invites", map[string]any{"user_id": eve.ID, "room_id": other.Id}, "room_id"},
		{"ban on behalf of someone", ann, "POST", base + "/bans", map[string]any{"user_id": eve.ID, "banned_by": bob.ID}, "banned_by"},
		{"mark someone else read", ann, "POST", base + "/read", map[string]any{"seq": 1, "user_id": bob.ID}, "user_id"},
	}
	rooms := s.Count(t, "SELECT count(*) FROM rooms")
	messages := s.Count(t, "SELECT count(*) FROM messages")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, beforeOther := azReadRoomState(t, s, room.Id), azReadRoomState(t, s, other.Id)
			res, b := azReq(t, s, tc.as, tc.method, tc.path, azJSON(tc.body))
			p := parlortest.RequireProblem(t, res, b, 400, "invalid_request")
			require.NotNil(t, p.Detail)
			require.Regexp(t, `\b`+regexp.QuoteMeta(tc.field)+`\b`, *p.Detail, "the problem does not name the field")
			require.Equal(t, before, azReadRoomState(t, s, room.Id), "the room changed")
			require.Equal(t, beforeOther, azReadRoomState(t, s, other.Id), "another room changed")
			require.Equal(t, rooms, s.Count(t, "SELECT count(*) FROM rooms"))
			require.Equal(t, messages, s.Count(t, "SELECT count(*) FROM messages"))
		})
	}
	got, err := ann.Client.GetRoomWithResponse(ctx, room.Id)
	require.NoError(t, err)
	require.Equal(t, ann.ID, got.JSON200.OwnerId)
	require.Equal(t, apiclient.VisibilityPrivate, got.JSON200.Visibility)
	require.Equal(t, int64(0), got.JSON200.EntryPrice)
}

// TestAuthzIDsComeFromThePath: a message or member of one room cannot be reached through
// the path of another room, even by someone with rights in both.
func TestAuthzIDsComeFromThePath(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob, carl := s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "carl")
	// ann owns both rooms; bob moderates A only; carl is a member of B only.
	a := createRoom(t, ann, "room a", apiclient.VisibilityPublic)
	b := createRoom(t, ann, "room b", apiclient.VisibilityPrivate)
	azOK(t, s, bob, 200, "POST", "/v1/rooms/"+a.Id.String()+"/join", "")
	azOK(t, s, ann, 200, "PUT", "/v1/rooms/"+a.Id.String()+"/members/"+bob.ID.String(), `{"role":"moderator"}`)
	azOK(t, s, ann, 201, "POST", "/v1/rooms/"+b.Id.String()+"/invites", azJSON(map[string]any{"user_id": carl.ID}))
	azOK(t, s, carl, 200, "POST", "/v1/rooms/"+b.Id.String()+"/join", "")
	inA := send(t, ann, a.Id, "in room a")
	inB := send(t, carl, b.Id, "in room b")

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
		{"moderator mutes B's member through A", bob, "PUT", aPath + "/members/" + carl.ID.String(), azJSON(map[string]any{"muted_until": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}), azNotFound},
		{"reply in A to B's message", bob, "POST", aPath + "/messages", azJSON(map[string]any{"client_msg_id": uuid.NewString(), "body": "re", "reply_to": inB.Id}), azWant{400, "invalid_request"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			beforeA, beforeB := azReadRoomState(t, s, a.Id), azReadRoomState(t, s, b.Id)
			res, body := azReq(t, s, tc.as, tc.method, tc.path, tc.body)
			parlortest.RequireProblem(t, res, body, tc.want.status, tc.want.code)
			require.Equal(t, beforeA, azReadRoomState(t, s, a.Id), "room A changed")
			require.Equal(t, beforeB, azReadRoomState(t, s, b.Id), "room B changed")
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
