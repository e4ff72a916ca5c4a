package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// A NUL character, which PostgreSQL's text refuses, is a 400 problem naming the field on
// every text input, and nothing is written. (It reached PostgreSQL and answered 500.)
func TestANulCharacterIsABadRequestNamingTheField(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann := s.Register(t, "ann")
	room := parlortest.CreateRoom(t, ann, "plain", apiclient.VisibilityPublic).Id
	msgID := parlortest.Send(t, ann, room, "first").Id
	base := "/v1/rooms/" + room.String()
	nul := "a\x00b"
	cases := []struct {
		name, method, path, body, field string
		auth                            bool
	}{
		{"register", "POST", "/v1/auth/register", parlortest.JSON(map[string]string{"email": "nul@example.com", "password": "password1", "display_name": nul}), "body.display_name", false},
		{"register email", "POST", "/v1/auth/register", parlortest.JSON(map[string]string{"email": "n\x00ul@example.com", "password": "password1", "display_name": "Nul"}), "body.email", false},
		{"login", "POST", "/v1/auth/login", parlortest.JSON(map[string]string{"email": "ann@example.com", "password": "pass\x00word"}), "body.password", false},
		{"create room", "POST", "/v1/rooms", parlortest.JSON(map[string]string{"name": nul}), "body.name", true},
		{"change room", "PATCH", base, parlortest.JSON(map[string]string{"topic": nul}), "body.topic", true},
		{"send", "POST", base + "/messages", parlortest.JSON(map[string]string{"client_msg_id": uuid.NewString(), "body": nul}), "body.body", true},
		{"edit", "PATCH", base + "/messages/" + msgID.String(), parlortest.JSON(map[string]string{"body": nul}), "body.body", true},
		{"search rooms", "GET", "/v1/rooms?scope=public&q=%00", "", "query.q", true},
	}
	messagesBefore := s.Count(t, "SELECT count(*) FROM messages")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.auth {
				h.Set("Authorization", "Bearer "+ann.AccessToken)
			}
			var res *http.Response
			var body []byte
			if tc.body == "" {
				res, body = s.Do(t, tc.method, tc.path, "", nil, h)
			} else {
				res, body = s.Do(t, tc.method, tc.path, "application/json", strings.NewReader(tc.body), h)
			}
			p := parlortest.RequireProblem(t, res, body, http.StatusBadRequest, "invalid_request")
			require.Contains(t, parlortest.ProblemFields(p), tc.field, string(body))
		})
	}
	require.Equal(t, messagesBefore, s.Count(t, "SELECT count(*) FROM messages"))
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM users"))
}

// Found by the spec-driven fuzz suite: the validator reads only a body's first JSON value
// and takes an explicit null for a field's default. Both are a 400 that says why, and
// nothing is made.
func TestABodyIsOneJSONValueWithoutNullsTheContractForbids(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann := s.Register(t, "ann")
	h := http.Header{"Authorization": {"Bearer " + ann.AccessToken}}
	for _, tc := range []struct{ name, body, field, detail string }{
		{"a second value after the body", `{"name":"two"} {}`, "body", "one JSON value"},
		{"an explicit null for a field with a default", `{"name":"nulled","entry_price":null}`, "body.entry_price", "may not be null"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := s.Do(t, http.MethodPost, "/v1/rooms", "application/json", strings.NewReader(tc.body), h)
			p := parlortest.RequireProblem(t, res, body, http.StatusBadRequest, "invalid_request")
			require.Contains(t, parlortest.ProblemFields(p), tc.field, string(body))
			require.NotNil(t, p.Detail)
			require.Contains(t, *p.Detail, tc.detail)
			require.NotContains(t, *p.Detail, "NUL")
		})
	}
	require.Equal(t, 0, s.Count(t, "SELECT count(*) FROM rooms"))
}
