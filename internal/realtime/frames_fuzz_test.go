package realtime

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/internal/cursor"
)

// requireControlFrame checks a close frame against RFC 6455 5.5 and 5.5.1: final, opcode 8,
// a payload of at most 125 bytes (so a one-byte length), a code, and a UTF-8 reason that
// begins the one given (all of it when it fits).
func requireControlFrame(t *testing.T, wire []byte, code int, reason string) {
	require.GreaterOrEqual(t, len(wire), 4)
	require.Equal(t, byte(0x80|opClose), wire[0])
	n := int(wire[1])
	require.LessOrEqual(t, n, 125, "a control frame's payload is at most 125 bytes; reason %q is %d bytes", reason, len(reason))
	require.Len(t, wire, 2+n)
	require.Equal(t, uint16(code), binary.BigEndian.Uint16(wire[2:4]))
	got := string(wire[4:])
	require.True(t, strings.HasPrefix(reason, got), "reason %q cut to %q", reason, got)
	if len(reason) <= maxCloseReason {
		require.Equal(t, reason, got)
	}
	require.True(t, utf8.Valid(wire[4:]), "a close reason is UTF-8")
}

// FuzzClientFrame parses arbitrary client frames as readLoop does: parsing never panics, a
// frame it takes is a ping with a short id or a typing frame with a room, and the close frame
// it answers anything else with is a valid WebSocket control frame.
func FuzzClientFrame(f *testing.F) {
	room := uuid.MustParse("6b1c1b54-5d7b-4c62-9c1e-4f0f1f0a7b10")
	for _, s := range []string{
		`{"type":"ping"}`,
		`{"type":"ping","id":"abc"}`,
		`{"type":"ping","id":"` + string(bytes.Repeat([]byte{'x'}, 65)) + `"}`,
		`{"type":"typing.start","room_id":"` + room.String() + `"}`,
		`{"type":"typing.stop","room_id":"` + room.String() + `"}`,
		`{"type":"typing.start"}`,
		`{"type":"typing.start","room_id":"nope"}`,
		`{"type":"subscribe"}`,
		`{"type":"` + string(bytes.Repeat([]byte{'y'}, 100)) + `"}`,
		`{"type":"ééééééééééééééééééé"}`,
		`{"type":1}`,
		`[]`,
		`null`,
		``,
		`{"type":"ping","id":null,"extra":[1,2,3]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, reason := parseClientFrame(websocket.TextMessage, data)
		if reason == "" {
			switch fr.Type {
			case "ping":
				require.True(t, fr.ID == nil || len(*fr.ID) <= maxPingID)
			case "typing.start", "typing.stop":
				require.NotNil(t, fr.RoomID)
			default:
				t.Fatalf("took a frame of type %q", fr.Type)
			}
			return
		}
		requireControlFrame(t, closeFrame(ClosePolicy, reason), ClosePolicy, reason)
	})
}

type revokedSet map[uuid.UUID]bool

func (r revokedSet) Revoked(session uuid.UUID) bool { return r[session] }

var fuzzRevoked = uuid.MustParse("0d4b3c2a-1111-4222-8333-444455556666")

func fuzzTickets(t testing.TB, now time.Time) (*Tickets, *cursor.Signer) {
	s, err := cursor.NewSigner(bytes.Repeat([]byte{5}, 32))
	require.NoError(t, err)
	return NewTickets(revokedSet{fuzzRevoked: true}, s, func() time.Time { return now }), s
}

// redeem spends a ticket as the gateway does: verified, then claimed with the socket's
// admission into p (a presence on the fuzz clock).
func redeem(ctx context.Context, tickets *Tickets, p Presence, ticket string) (uuid.UUID, uuid.UUID, error) {
	user, session, claim, err := tickets.Verify(ticket)
	if err != nil {
		return uuid.Nil, uuid.Nil, err
	}
	if _, _, err := p.Admit(ctx, user, p.NewConnID(), time.Minute, 1<<20, claim); err != nil {
		if errors.Is(err, ErrTicketUsed) {
			return uuid.Nil, uuid.Nil, errBadTicket
		}
		return uuid.Nil, uuid.Nil, err
	}
	return user, session, nil
}

func fuzzPresence(now time.Time) *MemoryPresence {
	p := NewMemoryPresence()
	p.now = func() time.Time { return now }
	return p
}

// FuzzTicketRedeem redeems arbitrary strings: never a panic, errBadTicket for anything but
// the one ticket the seeds issued (a forged ticket never verifies), which redeems once; and a fresh ticket, issued alongside, redeems exactly once.
func FuzzTicketRedeem(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	tickets, signer := fuzzTickets(f, now)
	ctx := context.Background()
	// The seed ticket is the same in every fuzz worker process: Issue's nonce is random.
	goodUser, goodSession := uuid.MustParse("6b1c1b54-5d7b-4c62-9c1e-4f0f1f0a7b10"), uuid.MustParse("7c2d2c65-6e8c-4d73-ad2f-5a1a2a1b8c21")
	goodPayload := append(append([]byte{}, goodUser[:]...), goodSession[:]...)
	goodPayload = binary.BigEndian.AppendUint64(goodPayload, uint64(now.Add(TicketTTL).Unix()))
	goodPayload = append(goodPayload, bytes.Repeat([]byte{9}, 12)...)
	good := ticketPrefix + signer.Seal(ticketKind, goodPayload)
	issued, err := tickets.Issue(ctx, goodUser, goodSession)
	require.NoError(f, err)
	require.Len(f, issued, len(good), "the seed has the form of an issued ticket")
	f.Add(good)
	f.Add(good[len(ticketPrefix):])
	f.Add(ticketPrefix)
	f.Add("")
	f.Add("rtk_!!!")
	f.Add(ticketPrefix + good)
	f.Add(good[:len(good)-1])
	f.Fuzz(func(t *testing.T, ticket string) {
		tickets, signer := fuzzTickets(t, now)
		p := fuzzPresence(now)
		user, session, err := redeem(ctx, tickets, p, ticket)
		if err == nil {
			// Only a ticket this secret signed opens: the seed's issued one, however spelled.
			raw, ok := strings.CutPrefix(ticket, ticketPrefix)
			require.True(t, ok)
			b, err := signer.Open(ticketKind, raw)
			require.NoError(t, err)
			require.Equal(t, goodPayload, b)
			require.Equal(t, goodUser, user)
			require.Equal(t, goodSession, session)
			_, _, err = redeem(ctx, tickets, p, ticket)
			require.ErrorIs(t, err, errBadTicket, "a ticket opens one socket")
		} else {
			require.ErrorIs(t, err, errBadTicket, "a ticket this instance did not issue")
			require.Equal(t, uuid.Nil, user)
			require.Equal(t, uuid.Nil, session)
		}

		u, s := uuid.New(), uuid.New()
		fresh, err := tickets.Issue(ctx, u, s)
		require.NoError(t, err)
		gotU, gotS, err := redeem(ctx, tickets, p, fresh)
		require.NoError(t, err)
		require.Equal(t, u, gotU)
		require.Equal(t, s, gotS)
		_, _, err = redeem(ctx, tickets, p, fresh)
		require.ErrorIs(t, err, errBadTicket, "a ticket opens one socket")
	})
}

// FuzzTicketPayload signs arbitrary payloads, to reach the parsing behind the signature: a
// payload that is not user, session, expiry and nonce, or that has expired, or expires later
// than a ticket of this service can, or whose session is revoked, is refused; any other redeems once, for the user and session it carries.
func FuzzTicketPayload(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	payload := func(user, session uuid.UUID, expires int64, nonce byte) []byte {
		b := append(append([]byte{}, user[:]...), session[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(expires))
		return append(b, bytes.Repeat([]byte{nonce}, 12)...)
	}
	u, s := uuid.MustParse("6b1c1b54-5d7b-4c62-9c1e-4f0f1f0a7b10"), uuid.MustParse("7c2d2c65-6e8c-4d73-ad2f-5a1a2a1b8c21")
	f.Add(payload(u, s, now.Add(TicketTTL).Unix(), 1))
	f.Add(payload(u, s, now.Unix(), 2))
	f.Add(payload(u, s, now.Unix()+1, 2))
	f.Add(payload(u, fuzzRevoked, now.Add(TicketTTL).Unix(), 3))
	f.Add(payload(u, s, -1, 4))
	f.Add(payload(u, s, 1<<62, 4))
	f.Add(payload(u, s, now.Add(TicketTTL).Unix(), 5)[:ticketBytes-1])
	f.Add(append(payload(u, s, now.Add(TicketTTL).Unix(), 6), 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		tickets, signer := fuzzTickets(t, now)
		p := fuzzPresence(now)
		ctx := context.Background()
		ticket := ticketPrefix + signer.Seal(ticketKind, b)
		user, session, err := redeem(ctx, tickets, p, ticket)
		inRange := func(exp int64) bool { return exp > now.Unix() && exp <= now.Add(TicketTTL+maxClockSkew).Unix() }
		valid := len(b) == ticketBytes && inRange(int64(binary.BigEndian.Uint64(b[32:40]))) &&
			!bytes.Equal(b[16:32], fuzzRevoked[:])
		if !valid {
			require.ErrorIs(t, err, errBadTicket)
			require.Equal(t, uuid.Nil, user)
			require.Equal(t, uuid.Nil, session)
			return
		}
		require.NoError(t, err)
		require.Equal(t, b[:16], user[:])
		require.Equal(t, b[16:32], session[:])
		_, _, err = redeem(ctx, tickets, p, ticket)
		require.ErrorIs(t, err, errBadTicket, "a second redeem")
		_, err = signer.Open("realtime-ticket", ticket[len(ticketPrefix):])
		require.NoError(t, err)
	})
}
