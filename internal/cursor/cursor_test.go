package cursor

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRoundTripAndTampering(t *testing.T) {
	s, err := NewSigner(bytes.Repeat([]byte{1}, 32))
	require.NoError(t, err)
	type page struct {
		After string `json:"a"`
		N     int    `json:"n"`
	}
	tok := s.Encode("rooms", page{"x", 3})
	var got page
	require.NoError(t, s.Decode("rooms", tok, &got))
	require.Equal(t, page{"x", 3}, got)

	require.ErrorIs(t, s.Decode("members", tok, &got), ErrInvalid, "a cursor of another list")
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	raw[len(raw)-2] ^= 1
	require.ErrorIs(t, s.Decode("rooms", base64.RawURLEncoding.EncodeToString(raw), &got), ErrInvalid, "an edited payload")
	for _, bad := range []string{"", "!!!", "abc", base64.RawURLEncoding.EncodeToString([]byte("short"))} {
		require.ErrorIs(t, s.Decode("rooms", bad, &got), ErrInvalid, bad)
	}
	other, _ := NewSigner(bytes.Repeat([]byte{2}, 32))
	require.ErrorIs(t, other.Decode("rooms", tok, &got), ErrInvalid, "another server's secret")
	_, err = NewSigner([]byte("short"))
	require.Error(t, err)
}
