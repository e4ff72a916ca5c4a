package cursor

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"
)

func fuzzSigner(t testing.TB) *Signer {
	s, err := NewSigner(bytes.Repeat([]byte{7}, 32))
	require.NoError(t, err)
	return s
}

// FuzzOpen feeds Open arbitrary tokens. It never panics; whatever opens is exactly what Seal
// makes of the payload under that kind (up to base64 spelling, see below), and only under
// that kind.
func FuzzOpen(f *testing.F) {
	s := fuzzSigner(f)
	f.Add("rooms", s.Seal("rooms", []byte(`{"a":"x","n":3}`)))
	f.Add("sync", s.Seal("sync", []byte{2, 0, 0, 0, 0, 0, 0, 0, 1, 5, 0, 0, 0}))
	f.Add("rooms", s.Seal("members", []byte(`{}`)))
	f.Add("rooms", "")
	f.Add("rooms", "!!!")
	f.Add("rooms", "abc")
	f.Add("rooms", base64.RawURLEncoding.EncodeToString([]byte("short")))
	f.Add("rooms", base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0}, macSize)))
	f.Add("", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 40)))
	f.Fuzz(func(t *testing.T, kind, token string) {
		payload, err := s.Open(kind, token)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid)
			require.Nil(t, payload)
			return
		}
		require.NotEmpty(t, payload, "Open never returns an empty payload")
		// The token's bytes are exactly Seal's: base64's decoder ignores CR/LF and the unused
		// low bits of the last character, so the text may be spelled differently, but the
		// tag and payload are the same.
		raw, err := base64.RawURLEncoding.DecodeString(token)
		require.NoError(t, err)
		resealed := s.Seal(kind, payload)
		reraw, err := base64.RawURLEncoding.DecodeString(resealed)
		require.NoError(t, err)
		require.Equal(t, raw, reraw)
		again, err := s.Open(kind, resealed)
		require.NoError(t, err)
		require.Equal(t, payload, again)
		_, err = s.Open(kind+"x", token)
		require.ErrorIs(t, err, ErrInvalid, "a token opens only under its own kind")
	})
}

// FuzzSealTamper seals a payload and flips one bit of the token's bytes: the flipped token
// never opens, the intact one opens to the payload, and another kind or secret refuses it.
func FuzzSealTamper(f *testing.F) {
	s := fuzzSigner(f)
	other, err := NewSigner(bytes.Repeat([]byte{8}, 32))
	require.NoError(f, err)
	f.Add("rooms", []byte(`{"a":"x","n":3}`), uint(0), uint8(0))
	f.Add("rooms", []byte(`{"a":"x","n":3}`), uint(30), uint8(7))
	f.Add("sync", []byte{2}, uint(16), uint8(0))
	f.Add("", []byte{}, uint(3), uint8(1))
	f.Add("realtime-ticket", bytes.Repeat([]byte{0xab}, 52), uint(67), uint8(5))
	f.Fuzz(func(t *testing.T, kind string, payload []byte, pos uint, bit uint8) {
		token := s.Seal(kind, payload)
		got, err := s.Open(kind, token)
		if len(payload) == 0 {
			require.ErrorIs(t, err, ErrInvalid, "an empty payload does not open")
			return
		}
		require.NoError(t, err)
		require.Equal(t, payload, got)
		_, err = other.Open(kind, token)
		require.ErrorIs(t, err, ErrInvalid, "another secret")
		_, err = s.Open(kind+"\x00", token)
		require.ErrorIs(t, err, ErrInvalid, "another kind")

		raw, err := base64.RawURLEncoding.DecodeString(token)
		require.NoError(t, err)
		raw[pos%uint(len(raw))] ^= 1 << (bit % 8)
		_, err = s.Open(kind, base64.RawURLEncoding.EncodeToString(raw))
		require.ErrorIs(t, err, ErrInvalid, "a flipped bit at %d", pos%uint(len(raw)))
	})
}

// FuzzDecode checks the JSON layer: what Decode accepts re-encodes to a cursor that
// decodes to the same value.
func FuzzDecode(f *testing.F) {
	s := fuzzSigner(f)
	type page struct {
		After string `json:"a"`
		N     int    `json:"n"`
	}
	f.Add([]byte(`{"a":"x","n":3}`))
	f.Add([]byte(`{"a":"x","n":3.5}`))
	f.Add([]byte(`{"a":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"a":"\ud800","n":-1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		var got page
		err := s.Decode("rooms", s.Seal("rooms", payload), &got)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid)
			return
		}
		var again page
		require.NoError(t, s.Decode("rooms", s.Encode("rooms", got), &again))
		require.Equal(t, got, again)
	})
}
