package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/parlor-dev/parlor/internal/apperr"
)

// Audience is the `aud` of every Parlor access token.
const Audience = "parlor-api"

// accessTokenType is the JWT `typ` header of access tokens (RFC 9068), checked on verify so
// that no other kind of JWT signed with the same key passes as an access token.
const accessTokenType = "at+jwt"

// clockLeeway absorbs clock skew between instances.
const clockLeeway = 5 * time.Second

// Principal is who an access token speaks for.
type Principal struct {
	UserID    uuid.UUID
	SessionID uuid.UUID
	TokenID   string
	ExpiresAt time.Time
}

type accessClaims struct {
	SessionID string `json:"sid"`
	jwt.RegisteredClaims
}

// AccessTokens signs and verifies access JWTs: EdDSA only, with iss, aud, exp, iat, nbf,
// sub and jti required.
type AccessTokens struct {
	ring   *KeyRing
	issuer string
	ttl    time.Duration
	now    func() time.Time
	parser *jwt.Parser

	// verified remembers tokens that passed, until they expire: a client sends the same
	// token with every request for minutes, and an Ed25519 verification costs ~90 µs of CPU
	// per request otherwise. The key ring never changes within a process, so a token that
	// verified once stays valid until its exp.
	mu       sync.Mutex
	verified map[string]Principal
}

// maxVerified bounds the verified-token cache; when full it starts over.
const maxVerified = 10000

// NewAccessTokens returns an issuer/verifier for tokens of the given issuer and lifetime.
func NewAccessTokens(ring *KeyRing, issuer string, ttl time.Duration) *AccessTokens {
	t := &AccessTokens{ring: ring, issuer: issuer, ttl: ttl, now: time.Now}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(clockLeeway),
		jwt.WithTimeFunc(func() time.Time { return t.now() }),
	)
	return t
}

// TTL is how long a new access token lives.
func (t *AccessTokens) TTL() time.Duration { return t.ttl }

// Issue signs a new access token for a user's session.
func (t *AccessTokens) Issue(userID, sessionID uuid.UUID) (string, error) {
	now := t.now()
	claims := accessClaims{
		SessionID: sessionID.String(),
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   userID.String(),
			Audience:  jwt.ClaimStrings{Audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(t.ttl)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        randomToken(16),
		},
	}
	key := t.ring.Signer()
	token := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	token.Header["kid"] = key.ID
	token.Header["typ"] = accessTokenType
	signed, err := token.SignedString(key.Private)
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	return signed, nil
}

var errBadToken = &apperr.Error{Code: apperr.Unauthorized, Message: "the access token is missing, invalid or expired"}

// Verify checks an access token and returns its principal. Every failure is the same
// unauthorized error to the caller; the reason is kept for logs. Failures are never cached.
func (t *AccessTokens) Verify(raw string) (Principal, error) {
	t.mu.Lock()
	p, ok := t.verified[raw]
	t.mu.Unlock()
	if ok && t.now().Before(p.ExpiresAt.Add(clockLeeway)) {
		return p, nil
	}
	p, err := t.verify(raw)
	if err != nil {
		return Principal{}, err
	}
	t.mu.Lock()
	if t.verified == nil || len(t.verified) >= maxVerified {
		t.verified = make(map[string]Principal)
	}
	t.verified[raw] = p
	t.mu.Unlock()
	return p, nil
}

func (t *AccessTokens) verify(raw string) (Principal, error) {
	var claims accessClaims
	token, err := t.parser.ParseWithClaims(raw, &claims, func(token *jwt.Token) (any, error) {
		if typ, _ := token.Header["typ"].(string); typ != accessTokenType {
			return nil, errors.New("not an access token")
		}
		kid, _ := token.Header["kid"].(string)
		key, ok := t.ring.Lookup(kid)
		if !ok {
			return nil, errors.New("unknown kid")
		}
		return key, nil
	})
	if err != nil || !token.Valid {
		return Principal{}, withCause(errBadToken, err)
	}
	if claims.NotBefore == nil || claims.IssuedAt == nil || claims.ID == "" {
		return Principal{}, withCause(errBadToken, errors.New("nbf, iat and jti are required"))
	}
	userID, err := uuid.Parse(claims.Subject)
	if err != nil {
		return Principal{}, withCause(errBadToken, fmt.Errorf("sub: %w", err))
	}
	sessionID, err := uuid.Parse(claims.SessionID)
	if err != nil {
		return Principal{}, withCause(errBadToken, fmt.Errorf("sid: %w", err))
	}
	return Principal{UserID: userID, SessionID: sessionID, TokenID: claims.ID, ExpiresAt: claims.ExpiresAt.Time}, nil
}

func withCause(e *apperr.Error, cause error) *apperr.Error {
	c := *e
	c.Err = cause
	return &c
}

// randomToken returns n random bytes, base64url-encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // never happens on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// refreshTokenPrefix marks Parlor refresh tokens so secret scanners can recognize them.
const refreshTokenPrefix = "prt_"

// newRefreshToken returns a fresh opaque refresh token (256 random bits) and its hash.
func newRefreshToken() (token string, hash []byte) {
	token = refreshTokenPrefix + randomToken(32)
	return token, hashRefreshToken(token)
}

// hashRefreshToken is what is stored: the tokens are 256-bit random, so a plain SHA-256
// is enough (no salt or stretching needed against guessing).
func hashRefreshToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}
