package app

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/wallet"
)

// pruner deletes rows that can no longer matter and says how many it deleted.
type pruner struct {
	every time.Duration
	prune func(context.Context) (int64, error)
}

// PruneArgs is the periodic River job that prunes one kind of expired row. River runs
// periodic jobs on the elected leader only, so with several instances one of them prunes.
type PruneArgs struct {
	// What names the rows: a key of the queue's pruners.
	What string `json:"what"`
}

// Kind implements river.JobArgs.
func (PruneArgs) Kind() string { return "prune" }

type pruneWorker struct {
	river.WorkerDefaults[PruneArgs]
	pruners map[string]pruner
	logger  *slog.Logger
}

func (w *pruneWorker) Work(ctx context.Context, job *river.Job[PruneArgs]) error {
	p, ok := w.pruners[job.Args.What]
	if !ok {
		return river.JobCancel(fmt.Errorf("prune: nothing called %q", job.Args.What))
	}
	n, err := p.prune(ctx)
	if err != nil {
		return fmt.Errorf("prune %s: %w", job.Args.What, err)
	}
	if n > 0 {
		w.logger.InfoContext(ctx, "pruned expired rows", "what", job.Args.What, "count", n)
	}
	return nil
}

// startQueue starts the River client that runs Parlor's background work: processing payment
// webhooks, settling top-ups left pending, and pruning expired rows.
func startQueue(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, topups *wallet.Topups, pruners map[string]pruner, logger *slog.Logger) (*river.Client[pgx.Tx], error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, &wallet.PaymentEventWorker{Topups: topups})
	river.AddWorker(workers, &wallet.ReconcileTopupsWorker{Topups: topups, RunTimeout: jobTimeout(cfg.JobRescueAfter, wallet.ReconcileTimeout)})
	river.AddWorker(workers, &pruneWorker{pruners: pruners, logger: logger})

	periodic := []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(cfg.TopupReconcileInterval),
		func() (river.JobArgs, *river.InsertOpts) { return wallet.ReconcileTopupsArgs{}, nil }, nil)}
	names := make([]string, 0, len(pruners))
	for name := range pruners {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		periodic = append(periodic, river.NewPeriodicJob(river.PeriodicInterval(pruners[name].every),
			func() (river.JobArgs, *river.InsertOpts) { return PruneArgs{What: name}, nil }, nil))
	}

	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Logger: logger.With("component", "river"),
		Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.JobWorkers}},
		// River fetches at most MaxWorkers jobs per fetch and waits FetchCooldown between
		// fetches (100 ms by default): 10 workers drain at most 100 jobs/s however fast
		// the jobs run. Draining 1,700 webhook jobs went from 86 to 134 jobs/s with 5 ms
		// (TestScaleSignedWebhookDeliveriesOverHTTP, 2 busy cores); a fetch is one query.
		FetchCooldown: 5 * time.Millisecond,
		// A job its instance died running (SIGKILL, a lost node) stays `running` until the
		// rescuer retries it: after an hour by default, which left a paid top-up uncredited
		// that long (TestJobsOfAKilledParlorAreRetriedWithinMinutes). Every job here is
		// idempotent; each runs well under its timeout, which stays below the rescue.
		RescueStuckJobsAfter: cfg.JobRescueAfter,
		JobTimeout:           jobTimeout(cfg.JobRescueAfter, time.Minute),
		Workers:              workers,
		PeriodicJobs:         periodic,
	})
	if err != nil {
		return nil, fmt.Errorf("job queue: %w", err)
	}
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("start the job queue: %w", err)
	}
	return client, nil
}

// jobTimeout is want, cut to four fifths of the rescue delay: a job is given up before it
// could be rescued while still running.
func jobTimeout(rescueAfter, want time.Duration) time.Duration {
	return min(want, rescueAfter*4/5)
}
