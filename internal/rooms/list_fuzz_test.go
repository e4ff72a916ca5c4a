package rooms

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/cursor"
)

// FuzzListCursor decodes a room-list cursor (query.cursor, next_cursor) as List does: an
// empty cursor is the first page and leaves the value alone; a forged one, one of another
// list or a payload that is not the list's JSON is errBadCursor; and a cursor it takes
// re-encodes to one that decodes to the same position. The payload is fuzzed behind a
// valid signature, so the JSON decoding is reached.
func FuzzListCursor(f *testing.F) {
	signer, err := cursor.NewSigner(bytes.Repeat([]byte{4}, 32))
	require.NoError(f, err)
	s := &Service{cursors: signer}
	id := uuid.MustParse("6b1c1b54-5d7b-4c62-9c1e-4f0f1f0a7b10")
	f.Add("", []byte(nil), false)
	f.Add("garbage", []byte(nil), false)
	f.Add(signer.Encode("rooms:joined", timeCursor{T: time.Unix(1_700_000_000, 5).UTC(), ID: id}), []byte(nil), false)
	f.Add(signer.Encode("rooms:public", nameCursor{Name: "lobby", ID: id}), []byte(nil), false)
	f.Add("", []byte(`{"t":"2024-01-02T03:04:05.123456789+05:30","i":"6b1c1b54-5d7b-4c62-9c1e-4f0f1f0a7b10"}`), true)
	f.Add("", []byte(`{"t":"2024-01-02","i":"x"}`), true)
	f.Add("", []byte(`{"t":null,"i":null,"n":"a"}`), true)
	f.Add("", []byte(`{"i":"6b1c1b54-5d7b-4c62-9c1e-4f0f1f0a7b10","n":"\ud800"}`), true)
	f.Add("", []byte(`[`), true)
	f.Fuzz(func(t *testing.T, token string, payload []byte, sealPayload bool) {
		if sealPayload {
			token = signer.Seal("rooms:joined", payload)
		}
		before := timeCursor{ID: uuid.Max}
		c := before
		err := s.decode("rooms:joined", token, &c)
		if token == "" {
			require.NoError(t, err)
			require.Equal(t, before, c, "the first page")
			return
		}
		if err != nil {
			require.ErrorIs(t, err, errBadCursor)
		} else {
			var again timeCursor
			require.NoError(t, s.decode("rooms:joined", signer.Encode("rooms:joined", c), &again))
			require.True(t, c.T.Equal(again.T), "%v != %v", c.T, again.T)
			require.Equal(t, c.ID, again.ID)
		}
		require.ErrorIs(t, s.decode("rooms:invited", token, &timeCursor{}), errBadCursor, "a cursor of another list")

		var n nameCursor
		if err := s.decode("rooms:public", signer.Seal("rooms:public", payload), &n); err == nil && len(payload) > 0 {
			var again nameCursor
			require.NoError(t, s.decode("rooms:public", signer.Encode("rooms:public", n), &again))
			require.Equal(t, n, again)
		}
	})
}
