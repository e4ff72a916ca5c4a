package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

var ctx = context.Background()

func TestRegisterNormalizesEmailAndSignsIn(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)

	res, err := s.Client.RegisterWithResponse(ctx, apiclient.RegisterJSONRequestBody{
		Email: "  Ann.Lee@Example.COM ", Password: "correct horse", DisplayName: "  Ann  ",
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, res.StatusCode(), string(res.Body))
	got := res.JSON201
	require.Equal(t, "ann.lee@example.com", got.User.Email)
	require.Equal(t, "Ann", got.User.DisplayName)
	require.Equal(t, apiclient.Bearer, got.TokenType)
	require.Equal(t, 900, got.ExpiresIn)
	require.True(t, strings.HasPrefix(got.RefreshToken, "prt_"))

	me, err := s.NewClient(parlortest.Bearer(got.AccessToken)).GetMeWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, me.StatusCode(), string(me.Body))
	require.Equal(t, got.User.Id, me.JSON200.Id)

	// The password is stored only as an argon2id hash with the OWASP parameters.
	var hash string
	require.NoError(t, s.Pool.QueryRow(ctx, "SELECT password_hash FROM users").Scan(&hash))
	require.True(t, strings.HasPrefix(hash, "$argon2id$v=19$m=19456,t=2,p=1$"), hash)
	require.NotContains(t, hash, "correct horse")

	// The same address in another case is the same account.
	dup, err := s.Client.RegisterWithResponse(ctx, apiclient.RegisterJSONRequestBody{
		Email: "ANN.LEE@example.com", Password: "another password", DisplayName: "Impostor",
	})
	require.NoError(t, err)
	parlortest.RequireProblem(t, dup.HTTPResponse, dup.Body, http.StatusConflict, "conflict")
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM users"))

	// Login works with any case of the address.
	login, err := s.Client.LoginWithResponse(ctx, apiclient.LoginJSONRequestBody{Email: "Ann.Lee@example.com", Password: "correct horse"})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, login.StatusCode(), string(login.Body))
	require.Equal(t, got.User.Id, login.JSON200.User.Id)
}

func TestRegisterRejectsBadInputAndWritesNothing(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	valid := func(edit func(m map[string]any)) string {
		m := map[string]any{"email": "bob@example.com", "password": "password1", "display_name": "Bob"}
		edit(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	cases := []struct {
		name        string
		contentType string
		body        string
		status      int
		code        string
		field       string
	}{
		{"malformed JSON", "application/json", `{"email": "bob@example.com",`, 400, "invalid_request", ""},
		{"not an object", "application/json", `["bob"]`, 400, "invalid_request", ""},
		{"empty body", "application/json", ``, 400, "invalid_request", ""},
		{"unknown field", "application/json", valid(func(m map[string]any) { m["is_admin"] = true }), 400, "invalid_request", ""},
		{"id in body", "application/json", valid(func(m map[string]any) { m["id"] = uuid.NewString() }), 400, "invalid_request", ""},
		{"missing password", "application/json", valid(func(m map[string]any) { delete(m, "password") }), 400, "invalid_request", "body.password"},
		{"wrong type", "application/json", valid(func(m map[string]any) { m["password"] = 12345678 }), 400, "invalid_request", "body.password"},
		{"password too short", "application/json", valid(func(m map[string]any) { m["password"] = "1234567" }), 400, "invalid_request", "body.password"},
		{"password too long", "application/json", valid(func(m map[string]any) { m["password"] = strings.Repeat("p", 129) }), 400, "invalid_request", "body.password"},
		{"display name too long", "application/json", valid(func(m map[string]any) { m["display_name"] = strings.Repeat("n", 65) }), 400, "invalid_request", "body.display_name"},
		{"display name blank", "application/json", valid(func(m map[string]any) { m["display_name"] = "   " }), 400, "invalid_request", "body.display_name"},
		{"email without @", "application/json", valid(func(m map[string]any) { m["email"] = "bob.example.com" }), 400, "invalid_request", "body.email"},
		{"email too long", "application/json", valid(func(m map[string]any) { m["email"] = strings.Repeat("b", 250) + "@example.com" }), 400, "invalid_request", "body.email"},
		{"oversized body", "application/json", valid(func(m map[string]any) { m["display_name"] = strings.Repeat("x", 70<<10) }), 413, "payload_too_large", ""},
		{"wrong content type", "text/plain", valid(func(map[string]any) {}), 415, "unsupported_media_type", ""},
		{"form content type", "application/x-www-form-urlencoded", "email=bob%40example.com&password=password1&display_name=Bob", 415, "unsupported_media_type", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, body := s.Do(t, http.MethodPost, "/v1/auth/register", tc.contentType, strings.NewReader(tc.body), nil)
			p := parlortest.RequireProblem(t, res, body, tc.status, tc.code)
			require.NotEmpty(t, p.Detail)
			if tc.field != "" {
				require.Contains(t, parlortest.ProblemFields(p), tc.field, string(body))
			}
		})
	}
	require.Equal(t, 0, s.Count(t, "SELECT count(*) FROM users"), "a rejected request wrote a user")
	require.Equal(t, 0, s.Count(t, "SELECT count(*) FROM sessions"))

	// Bounds are in characters, not bytes: 8 multi-byte characters are a valid password,
	// 128 four-byte characters too.
	for _, pw := range []string{"ünïcödé", "ünïcödé!", strings.Repeat("😀", 128)} {
		res, err := s.Client.RegisterWithResponse(ctx, apiclient.RegisterJSONRequestBody{
			Email: "u" + strconv.Itoa(len(pw)) + "@example.com", Password: pw, DisplayName: "U",
		})
		require.NoError(t, err)
		if len([]rune(pw)) < 8 {
			parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 400, "invalid_request")
		} else {
			require.Equal(t, http.StatusCreated, res.StatusCode(), string(res.Body))
		}
	}
}

func TestLoginFailuresLookTheSame(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	u := s.Register(t, "carol")

	wrong, err := s.Client.LoginWithResponse(ctx, apiclient.LoginJSONRequestBody{Email: u.Email, Password: "not her password"})
	require.NoError(t, err)
	unknown, err := s.Client.LoginWithResponse(ctx, apiclient.LoginJSONRequestBody{Email: "nobody@example.com", Password: "not her password"})
	require.NoError(t, err)
	p1 := parlortest.RequireProblem(t, wrong.HTTPResponse, wrong.Body, 401, "invalid_credentials")
	p2 := parlortest.RequireProblem(t, unknown.HTTPResponse, unknown.Body, 401, "invalid_credentials")
	require.Equal(t, p1.Detail, p2.Detail)
	require.Equal(t, p1.Title, p2.Title)
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM sessions"), "a failed login created a session")
}

func TestRefreshRotatesAndReuseRevokesTheFamily(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	u := s.Register(t, "frank")

	first, err := s.Client.RefreshWithResponse(ctx, apiclient.RefreshJSONRequestBody{RefreshToken: u.RefreshToken})
	require.NoError(t, err)
	require.Equal(t, 200, first.StatusCode(), string(first.Body))
	require.NotEqual(t, u.RefreshToken, first.JSON200.RefreshToken)
	require.Equal(t, u.ID, first.JSON200.User.Id)

	// The new refresh token works once...
	second, err := s.Client.RefreshWithResponse(ctx, apiclient.RefreshJSONRequestBody{RefreshToken: first.JSON200.RefreshToken})
	require.NoError(t, err)
	require.Equal(t, 200, second.StatusCode(), string(second.Body))

	// ...and replaying the original is theft: 401, and the whole family dies.
	replay, err := s.Client.RefreshWithResponse(ctx, apiclient.RefreshJSONRequestBody{RefreshToken: u.RefreshToken})
	require.NoError(t, err)
	parlortest.RequireProblem(t, replay.HTTPResponse, replay.Body, 401, "refresh_token_reused")

	latest, err := s.Client.RefreshWithResponse(ctx, apiclient.RefreshJSONRequestBody{RefreshToken: second.JSON200.RefreshToken})
	require.NoError(t, err)
	parlortest.RequireProblem(t, latest.HTTPResponse, latest.Body, 401, "unauthorized")

	// Another sign-in of the same user is a different family and is untouched.
	other, err := s.Client.LoginWithResponse(ctx, apiclient.LoginJSONRequestBody{Email: u.Email, Password: u.Password})
	require.NoError(t, err)
	require.Equal(t, 200, other.StatusCode())
	again, err := s.Client.RefreshWithResponse(ctx, apiclient.RefreshJSONRequestBody{RefreshToken: other.JSON200.RefreshToken})
	require.NoError(t, err)
	require.Equal(t, 200, again.StatusCode(), string(again.Body))

	// Garbage is a plain 401.
	for _, tok := range []string{"prt_nope", "not-even-prefixed", strings.Repeat("a", 256)} {
		res, err := s.Client.RefreshWithResponse(ctx, apiclient.RefreshJSONRequestBody{RefreshToken: tok})
		require.NoError(t, err)
		parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 401, "unauthorized")
	}
	// Refresh tokens are stored only as hashes.
	require.Equal(t, 0, s.Count(t, "SELECT count(*) FROM refresh_tokens WHERE encode(token_hash, 'escape') LIKE '%prt_%'"))
}

func TestConcurrentRefreshesWithOneTokenOnlyOneWins(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	u := s.Register(t, "grace")

	const n = 50
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		mu      sync.Mutex
		winners int
		codes   = map[int]int{}
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := s.Client.RefreshWithResponse(ctx, apiclient.RefreshJSONRequestBody{RefreshToken: u.RefreshToken})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			codes[res.StatusCode()]++
			if res.StatusCode() == 200 {
				winners++
			}
		}()
	}
	close(start)
	wg.Wait()
	require.Equal(t, 1, winners, "status codes: %v", codes)
	require.Equal(t, n-1, codes[401], "status codes: %v", codes)
	// Exactly one new refresh token was minted from the presented one.
	require.Equal(t, 2, s.Count(t, "SELECT count(*) FROM refresh_tokens"))
}

func TestLogoutRevokesTheSession(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	u := s.Register(t, "heidi")

	res, err := u.Client.LogoutWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, res.StatusCode(), string(res.Body))

	ref, err := s.Client.RefreshWithResponse(ctx, apiclient.RefreshJSONRequestBody{RefreshToken: u.RefreshToken})
	require.NoError(t, err)
	parlortest.RequireProblem(t, ref.HTTPResponse, ref.Body, 401, "unauthorized")

	// Logging out twice is fine; logging out without a token is not.
	res, err = u.Client.LogoutWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, res.StatusCode())
	anon, err := s.Client.LogoutWithResponse(ctx)
	require.NoError(t, err)
	parlortest.RequireProblem(t, anon.HTTPResponse, anon.Body, 401, "unauthorized")
}

func TestKeyRotationLogsNobodyOut(t *testing.T) {
	t.Parallel()
	oldCfg := parlortest.Config(t)
	oldServer := parlortest.Start(t, oldCfg)
	u := oldServer.Register(t, "judy")

	newSeed := bytes.Repeat([]byte{9}, ed25519.SeedSize)
	rotated := oldCfg
	rotated.JWTKeys = parlortest.KeyEntry("test-key-2", newSeed) + "," + parlortest.KeyEntry(parlortest.TestKeyID, parlortest.TestKeySeed)
	during := parlortest.Start(t, rotated)

	// A token signed with the old key still works on a server that signs with the new one.
	me, err := during.NewClient(parlortest.Bearer(u.AccessToken)).GetMeWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, me.StatusCode(), string(me.Body))

	// New tokens carry the new kid, and both keys are published.
	login, err := during.Client.LoginWithResponse(ctx, apiclient.LoginJSONRequestBody{Email: u.Email, Password: u.Password})
	require.NoError(t, err)
	require.Equal(t, 200, login.StatusCode())
	tok, _, err := jwt.NewParser().ParseUnverified(login.JSON200.AccessToken, jwt.MapClaims{})
	require.NoError(t, err)
	require.Equal(t, "test-key-2", tok.Header["kid"])
	require.Equal(t, "EdDSA", tok.Header["alg"])
	jwks, err := during.Client.GetJWKSWithResponse(ctx)
	require.NoError(t, err)
	require.Len(t, jwks.JSON200.Keys, 2)
	require.Equal(t, "test-key-2", jwks.JSON200.Keys[0].Kid)
	x, err := base64.RawURLEncoding.DecodeString(jwks.JSON200.Keys[0].X)
	require.NoError(t, err)
	require.Equal(t, []byte(ed25519.NewKeyFromSeed(newSeed).Public().(ed25519.PublicKey)), x)

	// A partner verifies the new token with the published key alone.
	_, err = jwt.Parse(login.JSON200.AccessToken, func(*jwt.Token) (any, error) { return ed25519.PublicKey(x), nil },
		jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithAudience("parlor-api"))
	require.NoError(t, err)

	// Once the old key is removed, its tokens are refused; the new ones keep working.
	after := rotated
	after.JWTKeys = parlortest.KeyEntry("test-key-2", newSeed)
	final := parlortest.Start(t, after)
	old, err := final.NewClient(parlortest.Bearer(u.AccessToken)).GetMeWithResponse(ctx)
	require.NoError(t, err)
	parlortest.RequireProblem(t, old.HTTPResponse, old.Body, 401, "unauthorized")
	fresh, err := final.NewClient(parlortest.Bearer(login.JSON200.AccessToken)).GetMeWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, fresh.StatusCode())
}
