// API3:2023 Broken Object Property Level Authorization.
//
// For Parlor this is two things. Mass assignment: a client must not set a property the
// server decides — a room's owner, id or seq, a message's author or room, a member's role
// beyond the rules, an account's admin flag, a top-up's credits, price or status, a tip's
// sender. Excessive exposure: a response must not carry what the caller may not see — a
// password hash, a token, another user's email address.
//
// This file proves both: TestAuthzMassAssignment sends such properties to every writing
// operation and requires a 400 naming the property with nothing written;
// TestEveryRequestBodyRefusesUnknownProperties walks the contract's request schemas
// (additionalProperties: false all the way down, which is what makes mass assignment a
// 400); TestResponsesExposeNoSecretsAndNoOneElsesEmail walks the response schemas for
// secret-named properties and where the User schema (with its email) is returned, and
// reads what a room shows of its members.
package owasp_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// TestAuthzMassAssignment sends bodies with fields the caller may not set (ids, owners,
// roles, seqs, prices, credits, senders): every one is a 400 and writes nothing.
func TestAuthzMassAssignment(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob, eve := s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "eve")
	room := parlortest.CreateRoom(t, ann, "assign", apiclient.VisibilityPrivate)
	other := parlortest.CreateRoom(t, eve, "elsewhere", apiclient.VisibilityPublic)
	base := "/v1/rooms/" + room.Id.String()
	s.AsOK(t, ann, 201, "POST", base+"/invites", parlortest.JSON(map[string]any{"user_id": bob.ID}))
	s.AsOK(t, bob, 200, "POST", base+"/join", "")
	msg := parlortest.Send(t, bob, room.Id, "bob's words")
	tip := "/v1/rooms/" + room.Id.String() + "/tips"

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
		// Accounts, money and sessions: nothing the server decides can be sent.
		{"register as an admin", nil, "POST", "/v1/auth/register", map[string]any{"email": "x@example.com", "password": "password1", "display_name": "X", "is_admin": true}, "is_admin"},
		{"register with a role", nil, "POST", "/v1/auth/register", map[string]any{"email": "x@example.com", "password": "password1", "display_name": "X", "role": "admin"}, "role"},
		{"register with an id", nil, "POST", "/v1/auth/register", map[string]any{"email": "x@example.com", "password": "password1", "display_name": "X", "id": newID}, "id"},
		{"log in as someone", nil, "POST", "/v1/auth/login", map[string]any{"email": bob.Email, "password": bob.Password, "user_id": ann.ID}, "user_id"},
		{"top-up with more credits", bob, "POST", "/v1/wallet/topups", map[string]any{"package_id": "small", "credits": 1_000_000}, "credits"},
		{"top-up at another price", bob, "POST", "/v1/wallet/topups", map[string]any{"package_id": "small", "amount": 1}, "amount"},
		{"top-up already paid", bob, "POST", "/v1/wallet/topups", map[string]any{"package_id": "small", "status": "succeeded"}, "status"},
		{"top-up for someone else", bob, "POST", "/v1/wallet/topups", map[string]any{"package_id": "small", "user_id": ann.ID}, "user_id"},
		{"tip from someone else", bob, "POST", tip, map[string]any{"recipient_id": ann.ID, "amount": 1, "sender_id": ann.ID}, "sender_id"},
		{"tip into another room", bob, "POST", tip, map[string]any{"recipient_id": ann.ID, "amount": 1, "room_id": other.Id}, "room_id"},
	}
	counts := map[string]int{}
	for _, table := range []string{"rooms", "messages", "users", "sessions", "topups", "tips", "ledger_transactions"} {
		counts[table] = s.Count(t, "SELECT count(*) FROM "+table)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, beforeOther := s.RoomState(t, room.Id), s.RoomState(t, other.Id)
			var res *http.Response
			var b []byte
			if tc.as == nil {
				res, b = s.Do(t, tc.method, tc.path, "application/json", strings.NewReader(parlortest.JSON(tc.body)), nil)
			} else {
				res, b = s.As(t, tc.as, tc.method, tc.path, parlortest.JSON(tc.body))
			}
			p := parlortest.RequireProblem(t, res, b, 400, "invalid_request")
			require.NotNil(t, p.Detail)
			require.Regexp(t, `\b`+regexp.QuoteMeta(tc.field)+`\b`, *p.Detail, "the problem does not name the field")
			require.Equal(t, before, s.RoomState(t, room.Id), "the room changed")
			require.Equal(t, beforeOther, s.RoomState(t, other.Id), "another room changed")
			for table, n := range counts {
				require.Equal(t, n, s.Count(t, "SELECT count(*) FROM "+table), "a row was written to %s", table)
			}
		})
	}
	got, err := ann.Client.GetRoomWithResponse(ctx, room.Id)
	require.NoError(t, err)
	require.Equal(t, ann.ID, got.JSON200.OwnerId)
	require.Equal(t, apiclient.VisibilityPrivate, got.JSON200.Visibility)
	require.Equal(t, int64(0), got.JSON200.EntryPrice)
}

// TestEveryRequestBodyRefusesUnknownProperties: every JSON request body of the contract is
// an object schema with additionalProperties: false, and so is every object inside it — but
// the Stripe webhook's, which is Stripe's event, verified on its raw bytes and never bound.
func TestEveryRequestBodyRefusesUnknownProperties(t *testing.T) {
	t.Parallel()
	bodies := 0
	for _, op := range contractOperations(t) {
		if op.op.RequestBody == nil || op.op.RequestBody.Value == nil || op.path == "/v1/webhooks/stripe" {
			continue
		}
		for mime, media := range op.op.RequestBody.Value.Content {
			bodies++
			walkSchemas(media.Schema, op.key()+" "+mime, func(where string, r *openapi3.SchemaRef) {
				s := r.Value
				if s.Type.Is("object") || len(s.Properties) > 0 {
					closed := s.AdditionalProperties.Has != nil && !*s.AdditionalProperties.Has
					require.True(t, closed, "%s: an object that takes unknown properties", where)
				}
			})
		}
	}
	require.Positive(t, bodies)
}

// secretName is a property name no response may carry.
var secretName = regexp.MustCompile(`(?i)password|secret|_hash$|^hash$|private|seed`)

// selfOperations are the only operations whose answers carry a User — the caller's own
// account, with its email.
var selfOperations = map[string]bool{
	"POST /v1/auth/register": true, "POST /v1/auth/login": true, "POST /v1/auth/refresh": true, "GET /v1/me": true,
}

// TestResponsesExposeNoSecretsAndNoOneElsesEmail: no response schema has a property named
// like a secret; only the caller's own account is ever answered with the User schema (the
// one with an email); and what a room shows of its members, messages and tips names no
// one's email.
func TestResponsesExposeNoSecretsAndNoOneElsesEmail(t *testing.T) {
	t.Parallel()
	for _, op := range contractOperations(t) {
		for status, res := range op.op.Responses.Map() {
			if res.Value == nil {
				continue
			}
			for mime, media := range res.Value.Content {
				walkSchemas(media.Schema, op.key()+" "+status+" "+mime, func(where string, r *openapi3.SchemaRef) {
					for name := range r.Value.Properties {
						require.False(t, secretName.MatchString(name), "%s: a response property %q", where, name)
					}
					if r.Ref == "#/components/schemas/User" {
						require.True(t, selfOperations[op.key()], "%s answers with a User (an email address), not the caller's own", op.key())
					}
				})
			}
		}
	}

	s := parlortest.New(t)
	ann, bob := s.Register(t, "ann"), s.Register(t, "bob")
	s.Grant(t, bob, 10)
	room := parlortest.CreateRoom(t, ann, "exposure", apiclient.VisibilityPublic)
	base := "/v1/rooms/" + room.Id.String()
	s.AsOK(t, bob, 200, "POST", base+"/join", "")
	parlortest.Send(t, ann, room.Id, "hello")
	s.AsOK(t, bob, 201, "POST", base+"/tips", parlortest.JSON(map[string]any{"recipient_id": ann.ID, "amount": 1}))
	for _, path := range []string{base, base + "/members", base + "/messages", base + "/presence", "/v1/sync", "/v1/rooms?scope=public"} {
		body := s.AsOK(t, bob, 200, "GET", path, "")
		require.NotContains(t, string(body), ann.Email, "GET %s shows another user's email", path)
		require.NotContains(t, string(body), ann.AccessToken, "GET %s shows another user's token", path)
	}
	me := s.AsOK(t, bob, 200, "GET", "/v1/me", "")
	require.NotContains(t, string(me), bob.Password)
	require.NotContains(t, string(me), "argon2id")
}

// walkSchemas calls visit for every schema reference reachable from ref (properties,
// items, allOf, oneOf, anyOf, additionalProperties); each schema's insides are walked once.
func walkSchemas(ref *openapi3.SchemaRef, where string, visit func(where string, r *openapi3.SchemaRef)) {
	seen := map[*openapi3.Schema]bool{}
	var walk func(r *openapi3.SchemaRef, where string)
	walk = func(r *openapi3.SchemaRef, where string) {
		if r == nil || r.Value == nil {
			return
		}
		if r.Ref != "" {
			where += " (" + r.Ref + ")"
		}
		visit(where, r)
		if seen[r.Value] {
			return
		}
		seen[r.Value] = true
		s := r.Value
		for name, p := range s.Properties {
			walk(p, where+"."+name)
		}
		walk(s.Items, where+"[]")
		for _, group := range []openapi3.SchemaRefs{s.AllOf, s.OneOf, s.AnyOf} {
			for _, sub := range group {
				walk(sub, where)
			}
		}
		walk(s.AdditionalProperties.Schema, where+".*")
	}
	walk(ref, where)
}
