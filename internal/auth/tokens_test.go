package auth

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestVerifiedTokensAreRememberedOnlyUntilTheyExpire(t *testing.T) {
	key, _, err := GenerateKey()
	require.NoError(t, err)
	ring, err := NewKeyRing(key)
	require.NoError(t, err)
	tokens := NewAccessTokens(ring, "https://parlor.example", time.Minute)
	now := time.Now()
	tokens.now = func() time.Time { return now }

	user, session := uuid.New(), uuid.New()
	raw, err := tokens.Issue(user, session)
	require.NoError(t, err)
	p, err := tokens.Verify(raw)
	require.NoError(t, err)
	require.Equal(t, user, p.UserID)
	require.Len(t, tokens.verified, 1)
	p, err = tokens.Verify(raw)
	require.NoError(t, err)
	require.Equal(t, session, p.SessionID)

	// A tampered token is never served from the cache, and never enters it.
	_, err = tokens.Verify(raw + "x")
	require.Error(t, err)
	require.Len(t, tokens.verified, 1)

	// Past its expiry the cached entry does not help: the token is refused.
	now = now.Add(2 * time.Minute)
	_, err = tokens.Verify(raw)
	require.Error(t, err)
}
