// Package auth holds accounts and sessions: passwords, access tokens and their key ring,
// refresh-token families with reuse detection, and sign-in throttling.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/postgres"
	"github.com/parlor-dev/parlor/internal/ratelimit"
)

// User is an account as the rest of Parlor sees it (never with its password hash).
type User struct {
	ID          uuid.UUID
	Email       string
	DisplayName string
	CreatedAt   time.Time
}

// Session is a signed-in session: fresh tokens and their owner.
type Session struct {
	AccessToken      string
	AccessExpiresIn  time.Duration
	RefreshToken     string
	RefreshExpiresIn time.Duration
	User             User
}

// Client describes where a request comes from, for throttling and the session record.
type Client struct {
	IP        netip.Addr
	UserAgent string
}

// Limits are the throttles on sign-in and sign-up.
type Limits struct {
	LoginPerIP      config.Rate
	LoginPerIPEmail config.Rate
	RegisterPerIP   config.Rate
}

// Service implements registration, sign-in, refresh and sign-out.
type Service struct {
	pool       *pgxpool.Pool
	passwords  *Passwords
	tokens     *AccessTokens
	limiter    ratelimit.Limiter
	limits     Limits
	refreshTTL time.Duration
	revs       *Revocations
	// OnRevoke, when set, is told after a session is revoked (to close its sockets).
	OnRevoke func(ctx context.Context, sessionID uuid.UUID)
}

func (s *Service) revoked(ctx context.Context, sessionID uuid.UUID) {
	s.revs.Add(sessionID)
	if s.OnRevoke != nil {
		s.OnRevoke(ctx, sessionID)
	}
}

// NewService wires the auth service.
func NewService(pool *pgxpool.Pool, passwords *Passwords, tokens *AccessTokens, limiter ratelimit.Limiter, limits Limits, refreshTTL time.Duration) *Service {
	return &Service{pool: pool, passwords: passwords, tokens: tokens, limiter: limiter, limits: limits, refreshTTL: refreshTTL,
		revs: NewRevocations(pool, tokens.TTL())}
}

// Revocations returns the sessions revoked while their access tokens may still be valid
// (used by the HTTP layer's authentication).
func (s *Service) Revocations() *Revocations { return s.revs }

// Tokens returns the access-token verifier (used by the HTTP layer's authentication).
func (s *Service) Tokens() *AccessTokens { return s.tokens }

// Password bounds, in Unicode code points (NIST SP 800-63B: length, no composition rules).
const (
	minPasswordLen    = 8
	maxPasswordLen    = 128
	maxDisplayNameLen = 64
	maxEmailLen       = 254
)

// NormalizeEmail trims and lower-cases an email address; addresses are compared this way.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// RegisterInput is what a new account needs.
type RegisterInput struct {
	Email       string
	Password    string
	DisplayName string
}

func (in RegisterInput) validate() (RegisterInput, error) {
	var fields []apperr.FieldError
	in.Email = NormalizeEmail(in.Email)
	in.DisplayName = strings.TrimSpace(in.DisplayName)
	if at := strings.LastIndexByte(in.Email, '@'); at < 1 || at == len(in.Email)-1 || len(in.Email) > maxEmailLen || strings.ContainsAny(in.Email, " \t\r\n") {
		fields = append(fields, apperr.FieldError{Field: "body.email", Message: "must be an email address"})
	}
	if n := utf8.RuneCountInString(in.Password); n < minPasswordLen || n > maxPasswordLen || !utf8.ValidString(in.Password) {
		fields = append(fields, apperr.FieldError{Field: "body.password", Message: fmt.Sprintf("must be %d to %d characters", minPasswordLen, maxPasswordLen)})
	}
	if n := utf8.RuneCountInString(in.DisplayName); n < 1 || n > maxDisplayNameLen {
		fields = append(fields, apperr.FieldError{Field: "body.display_name", Message: fmt.Sprintf("must be 1 to %d characters, not only spaces", maxDisplayNameLen)})
	}
	if len(fields) > 0 {
		return in, &apperr.Error{Code: apperr.Invalid, Message: "the account details are invalid", Fields: fields}
	}
	return in, nil
}

// Register creates an account and its first session.
func (s *Service) Register(ctx context.Context, in RegisterInput, client Client) (Session, error) {
	in, err := in.validate()
	if err != nil {
		return Session{}, err
	}
	if err := s.throttle(ctx, "register:ip:"+client.IP.String(), s.limits.RegisterPerIP); err != nil {
		return Session{}, err
	}
	hash, err := s.passwords.Hash(ctx, in.Password)
	if err != nil {
		return Session{}, fmt.Errorf("register: %w", err)
	}
	var session Session
	err = postgres.WithTx(ctx, s.pool, func(q *db.Queries) error {
		row, err := q.CreateUser(ctx, db.CreateUserParams{Email: in.Email, PasswordHash: hash, DisplayName: in.DisplayName})
		if postgres.IsUniqueViolation(err, "users_email_key") {
			return apperr.New(apperr.Conflict, "an account with this email already exists")
		}
		if err != nil {
			return err
		}
		session, err = s.startSession(ctx, q, userFromRow(row), client)
		return err
	})
	if err != nil {
		return Session{}, fmt.Errorf("register: %w", err)
	}
	return session, nil
}

var errInvalidCredentials = apperr.New(apperr.InvalidCredentials, "the email or password is wrong")

// Login checks a password and starts a session. Unknown emails and wrong passwords cost the
// same work and get the same error.
func (s *Service) Login(ctx context.Context, email, password string, client Client) (Session, error) {
	email = NormalizeEmail(email)
	ipKey := "login:ip:" + client.IP.String()
	pairKey := "login:ip-email:" + client.IP.String() + ":" + digest(email)
	if err := s.throttle(ctx, ipKey, s.limits.LoginPerIP); err != nil {
		return Session{}, err
	}
	if err := s.throttle(ctx, pairKey, s.limits.LoginPerIPEmail); err != nil {
		return Session{}, err
	}

	q := db.New(s.pool)
	row, err := q.GetUserByEmail(ctx, email)
	if err != nil && !postgres.IsNoRows(err) {
		return Session{}, fmt.Errorf("login: %w", err)
	}
	// row.PasswordHash is empty for an unknown email: Verify then burns the same time.
	ok, err := s.passwords.Verify(ctx, password, row.PasswordHash)
	if err != nil {
		return Session{}, fmt.Errorf("login: %w", err)
	}
	if !ok {
		return Session{}, errInvalidCredentials
	}
	// A successful sign-in clears this pair's failures; the per-IP budget stays spent.
	if err := s.limiter.Reset(ctx, pairKey); err != nil {
		return Session{}, fmt.Errorf("login: %w", err)
	}
	var session Session
	err = postgres.WithTx(ctx, s.pool, func(q *db.Queries) error {
		session, err = s.startSession(ctx, q, userFromRow(row), client)
		return err
	})
	if err != nil {
		return Session{}, fmt.Errorf("login: %w", err)
	}
	return session, nil
}

func (s *Service) throttle(ctx context.Context, key string, rate config.Rate) error {
	ok, retryAfter, err := s.limiter.Allow(ctx, key, rate.N, rate.Window)
	if err != nil {
		return err
	}
	if !ok {
		return apperr.RateLimit(retryAfter, "too many attempts; try again later")
	}
	return nil
}

// startSession creates a session (a refresh-token family) and its first tokens.
func (s *Service) startSession(ctx context.Context, q *db.Queries, user User, client Client) (Session, error) {
	var ip *netip.Addr
	if client.IP.IsValid() {
		ip = &client.IP
	}
	row, err := q.CreateSession(ctx, db.CreateSessionParams{UserID: user.ID, UserAgent: truncate(client.UserAgent, 512), ClientIp: ip})
	if err != nil {
		return Session{}, fmt.Errorf("create session: %w", err)
	}
	return s.issue(ctx, q, user, row.ID)
}

// issue mints a new refresh token in the session and an access token for it.
func (s *Service) issue(ctx context.Context, q *db.Queries, user User, sessionID uuid.UUID) (Session, error) {
	refresh, hash := newRefreshToken()
	if err := q.CreateRefreshToken(ctx, db.CreateRefreshTokenParams{
		TokenHash: hash, SessionID: sessionID, ExpiresAt: time.Now().Add(s.refreshTTL),
	}); err != nil {
		return Session{}, fmt.Errorf("store refresh token: %w", err)
	}
	access, err := s.tokens.Issue(user.ID, sessionID)
	if err != nil {
		return Session{}, err
	}
	return Session{
		AccessToken: access, AccessExpiresIn: s.tokens.TTL(),
		RefreshToken: refresh, RefreshExpiresIn: s.refreshTTL,
		User: user,
	}, nil
}

var (
	errBadRefresh    = apperr.New(apperr.Unauthorized, "the refresh token is invalid, expired or revoked")
	errReusedRefresh = apperr.New(apperr.RefreshTokenReused, "this refresh token was already used; the session is revoked, sign in again")
)

// Refresh exchanges a refresh token for new tokens. The token row is locked, so of
// concurrent exchanges of one token exactly one wins; every later presentation of a used
// token is treated as theft and revokes the whole session.
func (s *Service) Refresh(ctx context.Context, token string) (Session, error) {
	if !strings.HasPrefix(token, refreshTokenPrefix) {
		return Session{}, errBadRefresh
	}
	hash := hashRefreshToken(token)
	var (
		session   Session
		reused    bool
		sessionID uuid.UUID
	)
	err := postgres.WithTx(ctx, s.pool, func(q *db.Queries) error {
		rt, err := q.LockRefreshToken(ctx, hash)
		if postgres.IsNoRows(err) {
			return errBadRefresh
		}
		if err != nil {
			return err
		}
		if rt.RevokedAt != nil || !time.Now().Before(rt.ExpiresAt) {
			return errBadRefresh
		}
		if rt.UsedAt != nil {
			// Commit the revocation, then report the reuse.
			reused, sessionID = true, rt.SessionID
			return q.RevokeSession(ctx, db.RevokeSessionParams{ID: rt.SessionID, Reason: ptr("refresh_token_reused")})
		}
		if err := q.MarkRefreshTokenUsed(ctx, hash); err != nil {
			return err
		}
		if err := q.TouchSession(ctx, rt.SessionID); err != nil {
			return err
		}
		userRow, err := q.GetUser(ctx, rt.UserID)
		if err != nil {
			return err
		}
		session, err = s.issue(ctx, q, userFromRow(userRow), rt.SessionID)
		return err
	})
	if err != nil {
		return Session{}, fmt.Errorf("refresh: %w", err)
	}
	if reused {
		s.revoked(ctx, sessionID)
		return Session{}, errReusedRefresh
	}
	return session, nil
}

// Logout revokes a session; revoking a revoked session is a no-op.
func (s *Service) Logout(ctx context.Context, sessionID uuid.UUID) error {
	err := db.New(s.pool).RevokeSession(ctx, db.RevokeSessionParams{ID: sessionID, Reason: ptr("logout")})
	if err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	s.revoked(ctx, sessionID)
	return nil
}

// User returns an account by id.
func (s *Service) User(ctx context.Context, id uuid.UUID) (User, error) {
	row, err := db.New(s.pool).GetUser(ctx, id)
	if postgres.IsNoRows(err) {
		// The token is valid but its account is gone.
		return User{}, apperr.New(apperr.Unauthorized, "the account no longer exists")
	}
	if err != nil {
		return User{}, fmt.Errorf("get user: %w", err)
	}
	return userFromRow(row), nil
}

func userFromRow(u db.User) User {
	return User{ID: u.ID, Email: u.Email, DisplayName: u.DisplayName, CreatedAt: u.CreatedAt}
}

// digest keeps raw emails out of limiter keys.
func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:12])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func ptr[T any](v T) *T { return &v }

// pruneBatch bounds the rows one prune statement deletes, so no run holds many locks.
const pruneBatch = 1000

// PruneSessions deletes expired refresh tokens and then the sessions left without any: a
// signed-out or abandoned sign-in can never be used again once its last refresh token has
// expired. It returns how many rows it deleted.
func (s *Service) PruneSessions(ctx context.Context) (int64, error) {
	q := db.New(s.pool)
	var total int64
	for _, prune := range []func(context.Context, int32) (int64, error){q.PruneExpiredRefreshTokens, q.PruneEndedSessions} {
		for {
			n, err := prune(ctx, pruneBatch)
			total += n
			if err != nil {
				return total, fmt.Errorf("prune sessions: %w", err)
			}
			if n < pruneBatch {
				break
			}
		}
	}
	return total, nil
}
