package realtime

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/postgres"
)

// TicketTTL is how long a ticket may wait before it is used.
const TicketTTL = 30 * time.Second

const ticketPrefix = "rtk_"

// Tickets issues and redeems single-use WebSocket tickets. They live in PostgreSQL, so any
// instance can redeem a ticket another issued, with or without Redis.
type Tickets struct {
	pool *pgxpool.Pool
}

// NewTickets returns the ticket store.
func NewTickets(pool *pgxpool.Pool) *Tickets { return &Tickets{pool: pool} }

// Issue makes a ticket for user's session.
func (t *Tickets) Issue(ctx context.Context, user, session uuid.UUID) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	ticket := ticketPrefix + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(ticket))
	if err := db.New(t.pool).CreateTicket(ctx, db.CreateTicketParams{
		TicketHash: sum[:], UserID: user, SessionID: session, ExpiresAt: time.Now().Add(TicketTTL),
	}); err != nil {
		return "", fmt.Errorf("issue ticket: %w", err)
	}
	return ticket, nil
}

var errBadTicket = apperr.New(apperr.Unauthorized, "the ticket is missing, expired or already used; get a new one from POST /v1/realtime/tickets")

// Redeem uses up a ticket and returns whom it was for. A second redeem of the same ticket
// fails, also when both race.
func (t *Tickets) Redeem(ctx context.Context, ticket string) (user, session uuid.UUID, err error) {
	if len(ticket) < len(ticketPrefix)+10 || ticket[:len(ticketPrefix)] != ticketPrefix {
		return uuid.Nil, uuid.Nil, errBadTicket
	}
	sum := sha256.Sum256([]byte(ticket))
	row, err := db.New(t.pool).ConsumeTicket(ctx, sum[:])
	if postgres.IsNoRows(err) {
		return uuid.Nil, uuid.Nil, errBadTicket
	}
	if err != nil {
		return uuid.Nil, uuid.Nil, fmt.Errorf("redeem ticket: %w", err)
	}
	if !time.Now().Before(row.ExpiresAt) || row.RevokedAt != nil {
		return uuid.Nil, uuid.Nil, errBadTicket
	}
	return row.UserID, row.SessionID, nil
}

// Prune deletes expired tickets (a periodic job runs it).
func (t *Tickets) Prune(ctx context.Context) (int64, error) {
	return db.New(t.pool).DeleteExpiredTickets(ctx)
}
