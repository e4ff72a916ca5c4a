// API2:2023 Broken Authentication.
//
// For Parlor authentication is an EdDSA-signed access JWT (15 min, with a kid naming one
// of the live keys) presented as a bearer token, an opaque refresh token rotated on every
// use, and sign-in with email and password. Broken would mean a token the server did not
// issue, or no longer stands behind, is taken — the RFC 8725 attacks on JWTs — or that
// passwords can be guessed at speed.
//
// This file proves: TestAccessTokenAttackMatrix sends tokens forged every way RFC 8725
// warns of (alg none in any case, HS/RS/ES/PS algorithm and key confusion with the public
// key as the HMAC secret, unknown, missing and injected kid — path traversal, SQL, NUL, a
// /dev/null kid with an empty HMAC key —, embedded jwk/jku/x5u keys, expired, not yet
// valid, issued in the future, wrong or missing audience, issuer, subject, session, token
// type, tampered payload and signature, a stripped signature) and requires a 401 for each
// beside a control forged with the real key that is accepted; TestLoginThrottling and
// TestLoginThrottleTrustsOnlyConfiguredProxies hold guessing to the documented budgets;
// TestARevokedSessionsAccessTokenIsRefusedEverywhere ends a session's token on every
// instance. (Refresh-token rotation and reuse detection, key rotation and how passwords
// are hashed are internal/httpapi's auth_test.go.)
package owasp_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"

	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/parlor-dev/parlor/internal/config"

	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// requireTokenRefused checks, until timeout (0: at the first try), that an access token no
// longer reads /v1/me nor creates a room: each answers 401 once the revocation has reached
// the instance. It returns how long that took.
func requireTokenRefused(t *testing.T, c *apiclient.ClientWithResponses, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		me, err := c.GetMeWithResponse(ctx)
		require.NoError(t, err)
		if me.StatusCode() == http.StatusUnauthorized {
			parlortest.RequireProblem(t, me.HTTPResponse, me.Body, 401, "unauthorized")
			break
		}
		require.Equal(t, http.StatusOK, me.StatusCode(), string(me.Body))
		if time.Since(start) > timeout {
			t.Fatalf("the token of a revoked session still reads /v1/me %s later", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	room, err := c.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "after the end"})
	require.NoError(t, err)
	parlortest.RequireProblem(t, room.HTTPResponse, room.Body, 401, "unauthorized")
	return took
}

// Logout means logout: the session's access token stops working at once on the instance
// that revoked it and within 5 s on every other (issue 12, hole 1), on a server started
// after the logout too, and logging out again with it is still not an error.
func TestARevokedSessionsAccessTokenIsRefusedEverywhere(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	a := parlortest.Start(t, cfg)
	b := parlortest.Start(t, cfg)

	t.Run("logout", func(t *testing.T) {
		t.Parallel()
		u := a.Register(t, "olga")
		onB := b.NewClient(parlortest.Bearer(u.AccessToken))
		me, err := onB.GetMeWithResponse(ctx)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, me.StatusCode())

		res, err := u.Client.LogoutWithResponse(ctx)
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, res.StatusCode(), string(res.Body))
		requireTokenRefused(t, u.Client, 0) // at once where it logged out
		took := requireTokenRefused(t, onB, 5*time.Second)
		t.Logf("the other instance refused the token %s after the logout", took)

		again, err := u.Client.LogoutWithResponse(ctx)
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, again.StatusCode(), "logging out twice is not an error: %s", again.Body)

		// An instance that starts later knows of the revocation before its first request.
		later := parlortest.Start(t, cfg)
		requireTokenRefused(t, later.NewClient(parlortest.Bearer(u.AccessToken)), 0)
	})

	t.Run("refresh-token reuse", func(t *testing.T) {
		t.Parallel()
		u := a.Register(t, "pavel")
		first, err := a.Client.RefreshWithResponse(ctx, apiclient.RefreshJSONRequestBody{RefreshToken: u.RefreshToken})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, first.StatusCode(), string(first.Body))
		// The old refresh token again: theft, the whole session is revoked, including the
		// access token the first refresh returned.
		reuse, err := b.Client.RefreshWithResponse(ctx, apiclient.RefreshJSONRequestBody{RefreshToken: u.RefreshToken})
		require.NoError(t, err)
		parlortest.RequireProblem(t, reuse.HTTPResponse, reuse.Body, 401, "refresh_token_reused")
		fresh := first.JSON200.AccessToken
		requireTokenRefused(t, b.NewClient(parlortest.Bearer(fresh)), 0)
		requireTokenRefused(t, a.NewClient(parlortest.Bearer(fresh)), 5*time.Second)
	})

	t.Run("other sessions of the user keep working", func(t *testing.T) {
		t.Parallel()
		u := a.Register(t, "quinn")
		login, err := b.Client.LoginWithResponse(ctx, apiclient.LoginJSONRequestBody{Email: u.Email, Password: u.Password})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, login.StatusCode(), string(login.Body))
		res, err := u.Client.LogoutWithResponse(ctx)
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, res.StatusCode())
		requireTokenRefused(t, u.Client, 0)
		requireTokenRefused(t, b.NewClient(parlortest.Bearer(u.AccessToken)), 5*time.Second)
		for _, s := range []*parlortest.Server{a, b} {
			me, err := s.NewClient(parlortest.Bearer(login.JSON200.AccessToken)).GetMeWithResponse(ctx)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, me.StatusCode(), "another session of the user: %s", me.Body)
		}
	})
}

func TestLoginThrottling(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	cfg.LoginRateIPEmail = config.Rate{N: 3, Window: time.Minute}
	cfg.LoginRateIP = config.Rate{N: 6, Window: time.Minute}
	s := parlortest.Start(t, cfg)
	u := s.Register(t, "dave")

	login := func(email, password string, header http.Header) (*http.Response, []byte) {
		b, _ := json.Marshal(map[string]string{"email": email, "password": password})
		return s.Do(t, http.MethodPost, "/v1/auth/login", "application/json", bytes.NewReader(b), header)
	}
	for i := 0; i < 3; i++ {
		res, body := login(u.Email, "wrong", nil)
		parlortest.RequireProblem(t, res, body, 401, "invalid_credentials")
	}
	// The fourth try at this address is throttled, even with the right password, and a
	// spoofed X-Forwarded-For does not buy a new budget: no proxy is trusted.
	res, body := login(u.Email, u.Password, http.Header{"X-Forwarded-For": {"203.0.113.9"}})
	parlortest.RequireProblem(t, res, body, 429, "rate_limited")
	retry, err := strconv.Atoi(res.Header.Get("Retry-After"))
	require.NoError(t, err)
	require.True(t, retry >= 1 && retry <= 60, "Retry-After = %d", retry)

	// Other addresses from the same IP still get through until the per-IP budget (6
	// attempts, the throttled one included) is spent.
	for _, email := range []string{"someone@example.com", "someone-else@example.com"} {
		res, body = login(email, "whatever1", nil)
		parlortest.RequireProblem(t, res, body, 401, "invalid_credentials")
	}
	res, body = login("a-third@example.com", "whatever1", nil)
	parlortest.RequireProblem(t, res, body, 429, "rate_limited")
}

func TestLoginThrottleTrustsOnlyConfiguredProxies(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	cfg.LoginRateIPEmail = config.Rate{N: 1, Window: time.Minute}
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	s := parlortest.Start(t, cfg)
	u := s.Register(t, "erin")

	login := func(clientIP string) *http.Response {
		b, _ := json.Marshal(map[string]string{"email": u.Email, "password": "wrong"})
		res, _ := s.Do(t, http.MethodPost, "/v1/auth/login", "application/json", bytes.NewReader(b),
			http.Header{"X-Forwarded-For": {clientIP}})
		return res
	}
	require.Equal(t, 401, login("198.51.100.1").StatusCode)
	require.Equal(t, 429, login("198.51.100.1").StatusCode)
	// Behind the trusted proxy, another client IP has its own budget.
	require.Equal(t, 401, login("198.51.100.2").StatusCode)
}

// forge signs claims with method and key, with header fields added.
func forge(t *testing.T, method jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestAccessTokenAttackMatrix(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	u := s.Register(t, "ivan")

	realKey := ed25519.NewKeyFromSeed(parlortest.TestKeySeed)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	now := time.Now()
	valid := func() jwt.MapClaims {
		return jwt.MapClaims{
			"iss": s.Config.PublicURL, "aud": "parlor-api", "sub": u.ID.String(),
			"sid": uuid.NewString(), "jti": uuid.NewString(),
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		}
	}
	hdr := map[string]any{"kid": parlortest.TestKeyID, "typ": "at+jwt"}
	with := func(edit func(c jwt.MapClaims)) jwt.MapClaims {
		c := valid()
		edit(c)
		return c
	}
	eddsa := func(claims jwt.MapClaims) string { return forge(t, jwt.SigningMethodEdDSA, realKey, hdr, claims) }

	// The control: a token forged with the real key and correct claims is accepted, so each
	// rejection below is down to the one thing that case changes.
	control := eddsa(valid())
	me, err := s.NewClient(parlortest.Bearer(control)).GetMeWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, me.StatusCode(), string(me.Body))

	pub := realKey.Public().(ed25519.PublicKey)
	hsConfusion := forge(t, jwt.SigningMethodHS256, []byte(pub), hdr, valid())
	payload := b64(valid())
	algNone := b64(map[string]any{"alg": "none", "typ": "at+jwt", "kid": parlortest.TestKeyID}) + "." + payload + "."
	mac := hmac.New(sha256.New, []byte(base64.RawURLEncoding.EncodeToString(pub)))
	hsInput := b64(map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": parlortest.TestKeyID}) + "." + payload
	mac.Write([]byte(hsInput))
	hsB64Confusion := hsInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	parts := strings.Split(control, ".")
	tamperedPayload := parts[0] + "." + b64(with(func(c jwt.MapClaims) { c["sub"] = uuid.NewString() })) + "." + parts[2]

	sigOf := func(tok string) string { return tok[strings.LastIndex(tok, ".")+1:] }
	headerOf := func(h map[string]any) map[string]any {
		out := map[string]any{"typ": "at+jwt"}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	withKid := func(kid any) string {
		return forge(t, jwt.SigningMethodEdDSA, realKey, map[string]any{"kid": kid, "typ": "at+jwt"}, valid())
	}
	noneWith := func(alg, sig string) string {
		return b64(map[string]any{"alg": alg, "typ": "at+jwt", "kid": parlortest.TestKeyID}) + "." + payload + "." + sig
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	otherPub := otherKey.Public().(ed25519.PublicKey)
	jwk := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(otherPub)}
	cases := map[string]string{
		// RFC 8725 §2.1, §3.1: the algorithm is the server's choice, never the token's.
		"alg None":                     noneWith("None", ""),
		"alg NONE":                     noneWith("NONE", ""),
		"alg none keeping a signature": noneWith("none", sigOf(control)),
		"signature stripped":           parts[0] + "." + parts[1] + ".",
		"tampered signature":           parts[0] + "." + parts[1] + "." + parlortest.Tampered(parts[2]),
		"HS512 with public key":        forge(t, jwt.SigningMethodHS512, []byte(pub), hdr, valid()),
		"ES256 own key":                forge(t, jwt.SigningMethodES256, ecKey, hdr, valid()),
		"PS256 own key":                forge(t, jwt.SigningMethodPS256, rsaKey, hdr, valid()),
		// The kid is untrusted input, looked up in a map and nothing else (RFC 8725 §3.10).
		"kid path traversal":            withKid("../../../../../../dev/null"),
		"kid SQL":                       withKid("' OR '1'='1"),
		"kid SQL comment":               withKid(parlortest.TestKeyID + "' --"),
		"kid with NUL":                  withKid(parlortest.TestKeyID + "\x00"),
		"kid with a space":              withKid(" " + parlortest.TestKeyID),
		"kid in another case":           withKid(strings.ToUpper(parlortest.TestKeyID)),
		"kid a number":                  withKid(1),
		"kid an array":                  withKid([]string{parlortest.TestKeyID}),
		"kid empty":                     withKid(""),
		"kid /dev/null with empty HMAC": forge(t, jwt.SigningMethodHS256, []byte{}, map[string]any{"kid": "/dev/null", "typ": "at+jwt"}, valid()),
		// Keys the token brings along are never used (RFC 8725 §3.10, RFC 7515 §4.1.2–5).
		"embedded jwk": forge(t, jwt.SigningMethodEdDSA, otherKey, headerOf(map[string]any{"jwk": jwk}), valid()),
		"jku":          forge(t, jwt.SigningMethodEdDSA, otherKey, headerOf(map[string]any{"jku": "https://evil.example/jwks.json"}), valid()),
		"x5u":          forge(t, jwt.SigningMethodEdDSA, otherKey, headerOf(map[string]any{"x5u": "https://evil.example/cert.pem"}), valid()),
		// Claims (RFC 8725 §3.8, §3.9).
		"issuer with a trailing slash": eddsa(with(func(c jwt.MapClaims) { c["iss"] = s.Config.PublicURL + "/" })),
		"no issuer":                    eddsa(with(func(c jwt.MapClaims) { delete(c, "iss") })),
		"no audience":                  eddsa(with(func(c jwt.MapClaims) { delete(c, "aud") })),
		"audience of another service":  eddsa(with(func(c jwt.MapClaims) { c["aud"] = []string{"parlor-admin"} })),
		"expired long ago":             eddsa(with(func(c jwt.MapClaims) { c["exp"] = now.Add(-24 * time.Hour).Unix() })),
		"exp not a number":             eddsa(with(func(c jwt.MapClaims) { c["exp"] = "tomorrow" })),
		"malformed":                    "not.a.jwt",
		"garbage":                      "abc",
		"alg none":                     algNone,
		"HS256 with public key":        hsConfusion,
		"HS256 with encoded key":       hsB64Confusion,
		"RS256 own key":                forge(t, jwt.SigningMethodRS256, rsaKey, hdr, valid()),
		"wrong signature":              forge(t, jwt.SigningMethodEdDSA, otherKey, hdr, valid()),
		"tampered payload":             tamperedPayload,
		"unknown kid":                  forge(t, jwt.SigningMethodEdDSA, realKey, map[string]any{"kid": "nope", "typ": "at+jwt"}, valid()),
		"no kid":                       forge(t, jwt.SigningMethodEdDSA, realKey, map[string]any{"typ": "at+jwt"}, valid()),
		"not an access token":          forge(t, jwt.SigningMethodEdDSA, realKey, map[string]any{"kid": parlortest.TestKeyID, "typ": "JWT"}, valid()),
		"wrong audience":               eddsa(with(func(c jwt.MapClaims) { c["aud"] = "someone-else" })),
		"wrong issuer":                 eddsa(with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })),
		"expired":                      eddsa(with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })),
		"no exp":                       eddsa(with(func(c jwt.MapClaims) { delete(c, "exp") })),
		"not yet valid":                eddsa(with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })),
		"issued in the future":         eddsa(with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() })),
		"no iat":                       eddsa(with(func(c jwt.MapClaims) { delete(c, "iat") })),
		"no jti":                       eddsa(with(func(c jwt.MapClaims) { delete(c, "jti") })),
		"no sub":                       eddsa(with(func(c jwt.MapClaims) { delete(c, "sub") })),
		"sub not a user id":            eddsa(with(func(c jwt.MapClaims) { c["sub"] = "admin" })),
		"no session":                   eddsa(with(func(c jwt.MapClaims) { delete(c, "sid") })),
	}
	for name, token := range cases {
		t.Run(name, func(t *testing.T) {
			res, err := s.NewClient(parlortest.Bearer(token)).GetMeWithResponse(ctx)
			require.NoError(t, err)
			parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 401, "unauthorized")
			require.Equal(t, `Bearer realm="parlor"`, res.HTTPResponse.Header.Get("WWW-Authenticate"))
		})
	}
	for name, header := range map[string]string{
		"no header": "", "empty bearer": "Bearer ", "basic auth": "Basic dXNlcjpwYXNz", "token without scheme": control,
	} {
		t.Run(name, func(t *testing.T) {
			h := http.Header{}
			if header != "" {
				h.Set("Authorization", header)
			}
			res, body := s.Do(t, http.MethodGet, "/v1/me", "", nil, h)
			parlortest.RequireProblem(t, res, body, 401, "unauthorized")
		})
	}
}
