package realtime

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/cursor"
)

// TicketTTL is how long a ticket may wait before it is used.
const TicketTTL = 30 * time.Second

// maxClockSkew is how far another instance's clock may run ahead of this one's: a ticket
// it issued may expire up to this much later than one issued here.
const maxClockSkew = time.Minute

const (
	ticketPrefix = "rtk_"
	ticketKind   = "realtime-ticket"
	// ticketBytes: user, session, expiry (unix seconds), a random nonce.
	ticketBytes = 16 + 16 + 8 + 12
)

// Tickets issues and verifies single-use WebSocket tickets. A ticket is signed, not stored:
// it carries its user, session, expiry and a random nonce under the servers' shared secret,
// so issuing one costs no database write, and any instance can verify what another issued.
// Verifying checks the signature, the expiry and the session; it refuses the ticket of a
// session this instance knows has ended. That check is the instance's set of revoked
// sessions (a map lookup, current within seconds), not a PostgreSQL read per socket: the
// socket's join to the stream checks its session in PostgreSQL anyway and closes it with
// 4001 if it ended meanwhile. Spending the ticket is the socket's admission
// (Presence.Admit with the TicketClaim Verify returns): the nonce is claimed in the user's
// presence entry, in Redis shared by every instance, in the same round trip that takes a
// place under the per-user cap, so a ticket opens one socket, also when two instances
// redeem it at once.
type Tickets struct {
	revoked RevokedSessions
	signer  *cursor.Signer
	now     func() time.Time
}

// RevokedSessions says which sessions have ended (auth.Revocations).
type RevokedSessions interface {
	Revoked(session uuid.UUID) bool
}

// NewTickets returns the ticket issuer; now is the clock (time.Now when nil).
func NewTickets(revoked RevokedSessions, signer *cursor.Signer, now func() time.Time) *Tickets {
	if now == nil {
		now = time.Now
	}
	return &Tickets{revoked: revoked, signer: signer, now: now}
}

// Issue makes a ticket for user's session.
func (t *Tickets) Issue(_ context.Context, user, session uuid.UUID) (string, error) {
	b := make([]byte, 0, ticketBytes)
	b = append(b, user[:]...)
	b = append(b, session[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(t.now().Add(TicketTTL).Unix()))
	nonce := make([]byte, 12)
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("issue ticket: %w", err)
	}
	return ticketPrefix + t.signer.Seal(ticketKind, append(b, nonce...)), nil
}

var errBadTicket = apperr.New(apperr.Unauthorized, "the ticket is missing, expired or already used; get a new one from POST /v1/realtime/tickets")

// Verify checks a ticket and returns whom it was for, and the claim that spends it (see
// Tickets): a ticket that is forged, expired, or of a session that has ended, as far as
// this instance knows, is refused.
func (t *Tickets) Verify(ticket string) (user, session uuid.UUID, claim TicketClaim, err error) {
	raw, ok := strings.CutPrefix(ticket, ticketPrefix)
	if !ok {
		return uuid.Nil, uuid.Nil, TicketClaim{}, errBadTicket
	}
	b, err := t.signer.Open(ticketKind, raw)
	if err != nil || len(b) != ticketBytes {
		return uuid.Nil, uuid.Nil, TicketClaim{}, errBadTicket
	}
	copy(user[:], b[:16])
	copy(session[:], b[16:32])
	// A ticket this service issued expires within TicketTTL of now (plus maxClockSkew
	// between instances). Checking the range in seconds, before making a time of it, also
	// keeps an absurd expiry from overflowing time.Time or the claim's TTL.
	now := t.now().Unix()
	exp := int64(binary.BigEndian.Uint64(b[32:40]))
	if exp <= now || exp > now+int64((TicketTTL+maxClockSkew)/time.Second) {
		return uuid.Nil, uuid.Nil, TicketClaim{}, errBadTicket
	}
	if t.revoked.Revoked(session) {
		return uuid.Nil, uuid.Nil, TicketClaim{}, errBadTicket
	}
	// The claim outlives the ticket a little: a ticket is refused for its expiry before
	// its claim lapses, whatever the skew between instances' clocks.
	claim = TicketClaim{Nonce: base64.RawURLEncoding.EncodeToString(b[40:]), Expires: time.Unix(exp, 0).Add(maxClockSkew)}
	return user, session, claim, nil
}
