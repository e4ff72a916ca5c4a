package app_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/app"
	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/payments"
	"github.com/parlor-dev/parlor/internal/wallet"
)

var ctx = context.Background()

// TestReconcilerSettlesTopupsWhoseWebhooksWereLost: the periodic reconciler, on its own
// schedule and without any webhook, settles top-ups left pending for over five minutes from
// the provider's state — credits for a payment whose webhook never came, expiry for an
// abandoned checkout — and leaves alone the open checkouts and the young top-ups whose
// webhook may still arrive.
func TestReconcilerSettlesTopupsWhoseWebhooksWereLost(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	cfg.TopupReconcileInterval = time.Second
	s := parlortest.Start(t, cfg)
	sandbox := s.Topups.Provider().(*payments.Sandbox)
	ann := s.Register(t, "ann")

	topup := func() (wallet.Topup, string) {
		tp, err := s.Topups.Create(ctx, ann.ID, "small")
		require.NoError(t, err)
		var session string
		require.NoError(t, s.Pool.QueryRow(ctx, "SELECT checkout_session_id FROM topups WHERE id = $1", tp.ID).Scan(&session))
		return tp, session
	}
	paid, paidSession := topup()
	abandoned, abandonedSession := topup()
	open, _ := topup()
	young, youngSession := topup()
	// The payer pays (or cancels) at the provider, and the webhooks are lost: Settle at the
	// sandbox records the outcome without delivering its event.
	for _, session := range []string{paidSession, youngSession} {
		_, err := sandbox.Settle(ctx, session, true)
		require.NoError(t, err)
	}
	_, err := sandbox.Settle(ctx, abandonedSession, false)
	require.NoError(t, err)
	// Their first check comes due (five minutes after creation: WebhookGrace).
	_, err = s.Pool.Exec(ctx, "UPDATE topups SET next_check_at = now() - interval '1 second' WHERE id = ANY($1)",
		[]uuid.UUID{paid.ID, abandoned.ID, open.ID})
	require.NoError(t, err)

	statusOf := func(id uuid.UUID) apiclient.TopupStatus {
		var status string
		require.NoError(t, s.Pool.QueryRow(ctx, "SELECT status FROM topups WHERE id = $1", id).Scan(&status))
		return apiclient.TopupStatus(status)
	}
	require.Eventually(t, func() bool {
		return statusOf(paid.ID) == apiclient.TopupStatusSucceeded && statusOf(abandoned.ID) == apiclient.TopupStatusExpired
	}, 30*time.Second, 50*time.Millisecond, "the reconciler settles the stale top-ups")

	require.Equal(t, apiclient.TopupStatusPending, statusOf(open.ID), "an open checkout stays pending")
	require.Equal(t, apiclient.TopupStatusPending, statusOf(young.ID), "a young top-up waits for its webhook")
	res, err := ann.Client.GetWalletWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	require.Equal(t, paid.Credits, res.JSON200.Balance, "only the confirmed payment is credited")
	require.Equal(t, int64(2), res.JSON200.PendingTopups)
	require.Zero(t, s.Count(t, "SELECT count(*) FROM payment_events"), "no webhook was involved")
	problems, err := wallet.Reconcile(ctx, s.Pool)
	require.NoError(t, err)
	require.Empty(t, problems)
}

// TestPruneJobsDeleteOnlyExpiredRows: the prune jobs bound the tables that grow with use —
// expired refresh tokens and the sessions they leave empty, old Idempotency-Keys, expired
// realtime tickets — and never touch what a user still relies on: a live sign-in keeps
// refreshing, a fresh Idempotency-Key still replays.
func TestPruneJobsDeleteOnlyExpiredRows(t *testing.T) {
	t.Parallel()
	s := parlortest.Start(t, parlortest.Config(t))
	ann := s.Register(t, "ann")

	// A sign-in from two days ago whose refresh token expired yesterday…
	var ended uuid.UUID
	require.NoError(t, s.Pool.QueryRow(ctx,
		"INSERT INTO sessions (user_id, created_at, last_used_at) VALUES ($1, now() - interval '2 days', now() - interval '2 days') RETURNING id",
		ann.ID).Scan(&ended))
	hash := func() []byte { b := make([]byte, 32); _, _ = rand.Read(b); return b }
	_, err := s.Pool.Exec(ctx, "INSERT INTO refresh_tokens (token_hash, session_id, expires_at, used_at) VALUES ($1, $2, now() - interval '1 day', NULL)", hash(), ended)
	require.NoError(t, err)
	// …and, in ann's live session, the token her sign-in replaced (expired) beside the one
	// she holds.
	var live uuid.UUID
	require.NoError(t, s.Pool.QueryRow(ctx, "SELECT session_id FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE user_id = $1 AND id <> $2)", ann.ID, ended).Scan(&live))
	_, err = s.Pool.Exec(ctx, "INSERT INTO refresh_tokens (token_hash, session_id, expires_at, used_at) VALUES ($1, $2, now() - interval '1 minute', now() - interval '2 minutes')", hash(), live)
	require.NoError(t, err)
	// Idempotency-Keys: one from two days ago, one from a top-up just now.
	_, err = s.Pool.Exec(ctx, "INSERT INTO idempotency_keys (user_id, key, request_hash, status, created_at) VALUES ($1, 'old', $2, 200, now() - interval '2 days')", ann.ID, hash())
	require.NoError(t, err)
	key := uuid.NewString()
	buy := func() *apiclient.CreateTopupResponse {
		res, err := ann.Client.CreateTopupWithResponse(ctx, &apiclient.CreateTopupParams{IdempotencyKey: key},
			apiclient.CreateTopupJSONRequestBody{PackageId: "small"})
		require.NoError(t, err)
		require.Equal(t, 201, res.StatusCode(), string(res.Body))
		return res
	}
	first := buy()

	for _, what := range []string{"sessions", "idempotency_keys"} {
		runJob(t, s, app.PruneArgs{What: what})
	}

	require.Zero(t, s.Count(t, "SELECT count(*) FROM sessions WHERE id = $1", ended), "the ended session is gone")
	require.Zero(t, s.Count(t, "SELECT count(*) FROM refresh_tokens WHERE expires_at < now()"))
	require.Zero(t, s.Count(t, "SELECT count(*) FROM idempotency_keys WHERE key = 'old'"))
	again := buy()
	require.Equal(t, "true", again.HTTPResponse.Header.Get("Idempotent-Replayed"), "a fresh key still replays")
	require.Equal(t, first.JSON201.Id, again.JSON201.Id)
	// The live sign-in still refreshes.
	refreshed, err := s.Client.RefreshWithResponse(ctx, apiclient.RefreshJSONRequestBody{RefreshToken: ann.RefreshToken})
	require.NoError(t, err)
	require.Equal(t, 200, refreshed.StatusCode(), string(refreshed.Body))
}

// runJob runs one job through the server's queue and waits for it to complete.
func runJob(t *testing.T, s *parlortest.Server, args app.PruneArgs) {
	t.Helper()
	res, err := s.Queue.Insert(ctx, args, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var state string
		require.NoError(t, s.Pool.QueryRow(ctx, "SELECT state FROM river_job WHERE id = $1", res.Job.ID).Scan(&state))
		return state == "completed"
	}, 30*time.Second, 20*time.Millisecond, "prune job %q completes", args.What)
}
