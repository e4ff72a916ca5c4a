// Package faults is the fault suite: tests that run Parlor on servers of their own
// (PostgreSQL through pgtest, Redis started by the test, toxiproxy in-process, parlor
// processes built from ./cmd/parlor) and break them under load, then check what clients saw
// during the trouble and that nothing acknowledged was lost.
//
// What it covers:
//
//   - PostgreSQL stopped under paced senders and a reader: every 5xx is a 503 `unavailable`
//     problem with Retry-After, sends recover without a restart, every acknowledged
//     message is stored (TestAPostgreSQLOutageIsA503AndLosesNothingAcknowledged).
//   - Redis killed: sign-in, which counts attempts there, is a 503 problem; what needs only
//     PostgreSQL keeps working; sign-in recovers once Redis is back
//     (TestARedisOutageIsA503WhereARequestNeedsRedis).
//   - PostgreSQL stopped under the TypeScript SDK: a send is retried after each 503 until it
//     is stored once, a room create is handed back (TestTheSDKRetriesA503UntilTheDatabaseIsBack).
//   - One of two `parlor serve` processes killed with SIGKILL in the middle of a reconnect
//     storm of 160 sockets: each resumes with its last token, on the survivor when its own
//     instance is gone, and receives every acknowledged message exactly once, in room order,
//     without a gap; each is stored (TestAnInstanceKilledInAReconnectStormCostsNoSocketAnEvent).
//   - PostgreSQL and Redis behind toxiproxy, under sends, syncs, sign-ins, tickets and a
//     socket: 200 ms and 2 s of latency, reset connections, the proxies down, and every byte
//     dropped on open connections for longer than the request deadline. Every request is
//     answered within APP_REQUEST_TIMEOUT (and a little slack) with a success or a 503
//     problem, never a 500 or a hang; Parlor recovers without a restart; every acknowledged
//     message is stored and reaches the socket once, in order
//     (TestSlowAndCutStoresAreAnsweredWithinTheDeadline).
//
// Money that survives anything (issue 11); each ends with the ledger audit
// (wallet.Reconcile) finding nothing:
//
//   - 200 clients hang up (a reset) in the middle of POST /v1/wallet/topups: a retry under
//     the same Idempotency-Key is answered with one top-up of its own, each with its
//     checkout session, nothing credited
//     (TestAClientHangingUpDuringTopupCreationLeavesAWholeTopup), and a hang-up during the
//     key's claim leaves the key usable at once
//     (TestAHangUpDuringTheIdempotencyClaimLeavesTheKeyRetryable; it was locked for
//     IdempotencyStale).
//   - PostgreSQL stopped and restarted while 200 paid top-ups' events (30 % repeated) arrive
//     and mint; 5xx deliveries are retried as Stripe does: every delivery accepted, each
//     top-up credited exactly once (TestPostgreSQLRestartedWhileWebhooksAreProcessed).
//     A job that meets the outage is retried, never cancelled, so the jobs alone credit
//     every top-up (one that failed to find its top-up was cancelled: 2 of 8 runs).
//   - A `parlor serve` SIGKILLed while 300 paid top-ups are delivered and minted, a new one
//     started on the same database: each credited exactly once
//     (TestAParlorKilledMidMintIsMadeWholeOnRestart), by the jobs alone once the killed
//     process's running jobs are rescued after APP_JOB_RESCUE_AFTER
//     (TestJobsOfAKilledParlorAreRetriedWithinMinutes; River's default was an hour).
//   - 1,000 top-ups (paid, expired, delayed payment failed), 10,000 shuffled deliveries of
//     their events (30 % repeats) across two instances on one database: each paid top-up
//     credited once, no other, every event processed
//     (TestTenThousandShuffledDeliveriesThroughTwoInstances).
package faults
