package auth

import (
	"context"
	"fmt"
	"time"

	"github.com/alexedwards/argon2id"

	"github.com/parlor-dev/parlor/internal/apperr"
)

// PasswordParams are argon2id parameters from OWASP's Password Storage Cheat Sheet
// (m=19 MiB, t=2, p=1), set explicitly rather than taken from the library's defaults.
var PasswordParams = &argon2id.Params{
	Memory:      19 * 1024, // KiB
	Iterations:  2,
	Parallelism: 1,
	SaltLength:  16,
	KeyLength:   32,
}

// hashWaitLimit bounds how long a request queues for a hashing slot before it is told to
// come back later, so a login flood fails fast instead of piling up goroutines.
const hashWaitLimit = 3 * time.Second

// Passwords hashes and verifies passwords with a cap on concurrent hashes: each argon2id run
// holds ~19 MiB, so the cap bounds that memory whatever the request rate.
type Passwords struct {
	slots   chan struct{}
	waitFor time.Duration
	// dummy is a real hash of a random password, verified against when the email is
	// unknown so that a miss costs the same time as a wrong password.
	dummy string
}

// NewPasswords returns a hasher that runs at most concurrency hashes at once.
func NewPasswords(concurrency int) (*Passwords, error) {
	dummy, err := argon2id.CreateHash(randomToken(16), PasswordParams)
	if err != nil {
		return nil, fmt.Errorf("dummy hash: %w", err)
	}
	return &Passwords{slots: make(chan struct{}, concurrency), waitFor: hashWaitLimit, dummy: dummy}, nil
}

func (p *Passwords) acquire(ctx context.Context) (release func(), err error) {
	timer := time.NewTimer(p.waitFor)
	defer timer.Stop()
	select {
	case p.slots <- struct{}{}:
		return func() { <-p.slots }, nil
	case <-timer.C:
		return nil, &apperr.Error{Code: apperr.Unavailable, Message: "the server is busy; try again shortly", RetryAfter: time.Second}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Hash returns the encoded argon2id hash of password.
func (p *Passwords) Hash(ctx context.Context, password string) (string, error) {
	release, err := p.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return argon2id.CreateHash(password, PasswordParams)
}

// Verify reports whether password matches hash. An empty hash (unknown user) is verified
// against the dummy hash and always fails, after the same work.
func (p *Passwords) Verify(ctx context.Context, password, hash string) (bool, error) {
	release, err := p.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	if hash == "" {
		_, _ = argon2id.ComparePasswordAndHash(password, p.dummy)
		return false, nil
	}
	return argon2id.ComparePasswordAndHash(password, hash)
}
