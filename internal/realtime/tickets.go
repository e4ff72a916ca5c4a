package realtime

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

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

// Tickets issues and redeems single-use WebSocket tickets. A ticket is signed, not stored:
// it carries its user, session, expiry and a random nonce under the servers' shared secret,
// so issuing one costs no database write, and any instance can redeem what another issued.
// Redeeming claims the nonce (in Redis, shared by every instance; in memory without Redis,
// for a single instance), so a ticket opens one socket, also when two redeem it at once; and
// it refuses the ticket of a session this instance knows has ended. That check is the
// instance's set of revoked sessions (a map lookup, current within seconds), not a
// PostgreSQL read per socket: the socket's join to the stream checks its session in
// PostgreSQL anyway and closes it with 4001 if it ended meanwhile.
type Tickets struct {
	revoked RevokedSessions
	signer  *cursor.Signer
	claims  ticketClaims
	now     func() time.Time
}

// ticketClaims remembers the nonces of used tickets until they expire anyway.
type ticketClaims interface {
	// claim reports whether nonce was unused, and marks it used until expires.
	claim(ctx context.Context, nonce []byte, expires time.Time) (bool, error)
}

// RevokedSessions says which sessions have ended (auth.Revocations).
type RevokedSessions interface {
	Revoked(session uuid.UUID) bool
}

// NewTickets returns the ticket issuer. With rdb nil, used tickets are remembered in this
// process only (a single instance without Redis); now is the clock (time.Now when nil).
func NewTickets(revoked RevokedSessions, signer *cursor.Signer, rdb redis.UniversalClient, keyPrefix string, now func() time.Time) *Tickets {
	var claims ticketClaims = &memoryClaims{used: map[string]time.Time{}}
	if rdb != nil {
		claims = redisClaims{client: rdb, prefix: keyPrefix + "ticket:"}
	}
	if now == nil {
		now = time.Now
	}
	return &Tickets{revoked: revoked, signer: signer, claims: claims, now: now}
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

// Redeem uses up a ticket and returns whom it was for. A second redeem of the same ticket
// fails, also when both race on different instances; so does a ticket of a session that
// has ended since, as far as this instance knows (see Tickets).
func (t *Tickets) Redeem(ctx context.Context, ticket string) (user, session uuid.UUID, err error) {
	raw, ok := strings.CutPrefix(ticket, ticketPrefix)
	if !ok {
		return uuid.Nil, uuid.Nil, errBadTicket
	}
	b, err := t.signer.Open(ticketKind, raw)
	if err != nil || len(b) != ticketBytes {
		return uuid.Nil, uuid.Nil, errBadTicket
	}
	copy(user[:], b[:16])
	copy(session[:], b[16:32])
	// A ticket this service issued expires within TicketTTL of now (plus maxClockSkew
	// between instances). Checking the range in seconds, before making a time of it, also
	// keeps an absurd expiry from overflowing time.Time or the claim's TTL.
	now := t.now().Unix()
	exp := int64(binary.BigEndian.Uint64(b[32:40]))
	if exp <= now || exp > now+int64((TicketTTL+maxClockSkew)/time.Second) {
		return uuid.Nil, uuid.Nil, errBadTicket
	}
	expires := time.Unix(exp, 0)
	if t.revoked.Revoked(session) {
		return uuid.Nil, uuid.Nil, errBadTicket
	}
	first, err := t.claims.claim(ctx, b[40:], expires)
	if err != nil {
		return uuid.Nil, uuid.Nil, fmt.Errorf("redeem ticket: %w", err)
	}
	if !first {
		return uuid.Nil, uuid.Nil, errBadTicket
	}
	return user, session, nil
}

type redisClaims struct {
	client redis.UniversalClient
	prefix string
}

func (r redisClaims) claim(ctx context.Context, nonce []byte, expires time.Time) (bool, error) {
	// A little past the expiry: a ticket is refused for its expiry before its claim lapses.
	return r.client.SetNX(ctx, r.prefix+string(nonce), 1, time.Until(expires)+time.Minute).Result()
}

// memoryClaims is ticketClaims within one process. Expired claims are swept as new ones
// come, so it holds at most the tickets of the last TicketTTL.
type memoryClaims struct {
	mu    sync.Mutex
	used  map[string]time.Time
	swept time.Time
}

func (m *memoryClaims) claim(_ context.Context, nonce []byte, expires time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if now.Sub(m.swept) > TicketTTL {
		for k, exp := range m.used {
			if now.After(exp.Add(time.Minute)) {
				delete(m.used, k)
			}
		}
		m.swept = now
	}
	if _, used := m.used[string(nonce)]; used {
		return false, nil
	}
	m.used[string(nonce)] = expires
	return true, nil
}
