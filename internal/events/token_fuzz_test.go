package events

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/cursor"
)

func fuzzTokens(t testing.TB) (Tokens, *cursor.Signer) {
	s, err := cursor.NewSigner(bytes.Repeat([]byte{3}, 32))
	require.NoError(t, err)
	return NewTokens(s), s
}

// canonicalSnapshot is parseSnapshot's result in pg_snapshot text, or ok false.
func canonicalSnapshot(text string) (string, int, bool) {
	xmin, xmax, xip, ok := parseSnapshot(text)
	if !ok {
		return "", 0, false
	}
	parts := make([]string, len(xip))
	for i, x := range xip {
		parts[i] = strconv.FormatUint(x, 10)
	}
	return strconv.FormatUint(xmin, 10) + ":" + strconv.FormatUint(xmax, 10) + ":" + strings.Join(parts, ","), len(xip), true
}

// checkDecoded asserts what holds of any token Decode accepts: its snapshots are canonical
// pg_snapshot text, its cursor is set only inside a batch, and it re-encodes to a token that
// decodes to the same value.
func checkDecoded(t *testing.T, tokens Tokens, tok Token) {
	since, _, ok := canonicalSnapshot(tok.Since)
	require.True(t, ok, "since %q parses", tok.Since)
	require.Equal(t, since, tok.Since, "since is canonical")
	if tok.InBatch() {
		upto, _, ok := canonicalSnapshot(tok.Upto)
		require.True(t, ok, "upto %q parses", tok.Upto)
		require.Equal(t, upto, tok.Upto, "upto is canonical")
	} else {
		require.Equal(t, uuid.Nil, tok.AfterRoom)
		require.Zero(t, tok.AfterSeq)
	}
	require.GreaterOrEqual(t, tok.AfterSeq, int64(0))
	again, err := tokens.Decode(tokens.Encode(tok))
	require.NoError(t, err)
	require.Equal(t, tok, again)
}

// FuzzTokensDecode feeds Decode arbitrary strings (a forged one never verifies) and never
// panics; a refused token is always ErrFullSyncRequired.
func FuzzTokensDecode(f *testing.F) {
	tokens, _ := fuzzTokens(f)
	f.Add(tokens.Encode(Token{Epoch: 1, Since: "100:105:101,103"}))
	f.Add(tokens.Encode(Token{Epoch: EpochOf("x/1"), Since: "100:100:", Upto: "120:130:125", AfterRoom: uuid.MustParse("6b1c1b54-5d7b-4c62-9c1e-4f0f1f0a7b10"), AfterSeq: 42}))
	f.Add(tokens.Encode(Token{Since: "bogus"}))
	f.Add("")
	f.Add("not a token")
	f.Add(strings.Repeat("A", 4*MaxTokenBytes+1))
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := tokens.Decode(s)
		if err != nil {
			require.ErrorIs(t, err, ErrFullSyncRequired)
			require.Equal(t, Token{}, tok)
			return
		}
		checkDecoded(t, tokens, tok)
	})
}

// FuzzTokensDecodePayload signs arbitrary payloads, to reach the binary reader behind the
// signature: it never panics, and whatever it accepts round-trips.
func FuzzTokensDecodePayload(f *testing.F) {
	tokens, signer := fuzzTokens(f)
	payloadOf := func(tok Token) []byte {
		b, err := signer.Open(tokenKind, tokens.Encode(tok))
		require.NoError(f, err)
		return b
	}
	f.Add(payloadOf(Token{Epoch: 1, Since: "100:105:101,103"}))
	f.Add(payloadOf(Token{Epoch: 9, Since: "1:1:", Upto: "1:2:1", AfterRoom: uuid.New(), AfterSeq: 1 << 40}))
	f.Add([]byte{tokenVersion})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 5, 0, 0, 0})
	f.Add(append(binary.BigEndian.AppendUint64([]byte{tokenVersion}, 7), 5, 0, 0xe8, 0x07, 2))
	f.Add(append(binary.AppendUvarint(binary.BigEndian.AppendUint64([]byte{tokenVersion}, 7), 1<<63), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0))
	f.Fuzz(func(t *testing.T, payload []byte) {
		tok, err := tokens.Decode(signer.Seal(tokenKind, payload))
		if err != nil {
			require.ErrorIs(t, err, ErrFullSyncRequired)
			return
		}
		checkDecoded(t, tokens, tok)
	})
}

// FuzzTokensRoundTrip encodes tokens built from fuzzed fields: a token decodes if and only
// if its snapshots parse (and are within bounds) and its seq is not negative, and then to
// the token with its snapshots in canonical form.
func FuzzTokensRoundTrip(f *testing.F) {
	tokens, _ := fuzzTokens(f)
	room := uuid.MustParse("6b1c1b54-5d7b-4c62-9c1e-4f0f1f0a7b10")
	f.Add(uint64(1), "100:105:101,103", "", room[:], int64(0))
	f.Add(uint64(1), "100:105:103,101,103", "200:300:", room[:], int64(7))
	f.Add(uint64(0), "0:5:", "", []byte{}, int64(0))
	f.Add(uint64(5), "5:4:", "", []byte{}, int64(0))
	f.Add(uint64(5), "5:9:9", "", []byte{}, int64(0))
	f.Add(uint64(5), "05:9:", "10:20:11,011", room[:], int64(-1))
	f.Add(^uint64(0), "18446744073709551615:18446744073709551615:", "1:18446744073709551615:18446744073709551614", room[:], int64(1<<62))
	f.Fuzz(func(t *testing.T, epoch uint64, since, upto string, roomBytes []byte, seq int64) {
		var r uuid.UUID
		copy(r[:], roomBytes)
		in := Token{Epoch: epoch, Since: since, Upto: upto, AfterRoom: r, AfterSeq: seq}
		enc := tokens.Encode(in)
		got, err := tokens.Decode(enc)

		canonSince, nSince, okSince := canonicalSnapshot(since)
		canonUpto, nUpto, okUpto := canonicalSnapshot(upto)
		want := Token{Epoch: epoch, Since: canonSince}
		ok := okSince && nSince <= maxInFlight && len(enc) <= 4*MaxTokenBytes
		if in.InBatch() {
			want.Upto, want.AfterRoom, want.AfterSeq = canonUpto, r, seq
			ok = ok && okUpto && nUpto <= maxInFlight && seq >= 0
		}
		if !ok {
			require.ErrorIs(t, err, ErrFullSyncRequired, "%+v", in)
			return
		}
		require.NoError(t, err, "%+v", in)
		require.Equal(t, want, got)
		checkDecoded(t, tokens, got)
	})
}
