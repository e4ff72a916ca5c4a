package events_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/db"
	"github.com/parlor-dev/parlor/internal/events"
	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
)

// appendIn appends one event to room inside tx, the way every writer does: bump the room's
// seq under its row lock, insert the event.
func appendIn(t *testing.T, tx pgx.Tx, room, actor uuid.UUID) events.Event {
	t.Helper()
	q := db.New(tx)
	r, err := q.LockRoomForEvent(context.Background(), room)
	require.NoError(t, err)
	e, err := events.Append(context.Background(), q, r.LastSeq, events.Event{RoomID: room, Type: events.RoomUpdated, ActorID: actor})
	require.NoError(t, err)
	return e
}

// testLog reads with the default bound of APP_SYNC_MAX_BACKLOG.
var testLog = events.Log{MaxBacklog: 10_000}

// TestSnapshotTokensDeliverLateCommitsThatAnIDCursorLoses shows, deterministically, why the
// sync token is a snapshot: transaction T1 starts writing first (so it has the lower
// transaction id — and would have the lower bigserial id) but commits after T2. A reader that
// keeps "the highest id seen" reads T2's event, moves its cursor past T1's id, and never sees
// T1's event. The snapshot token knew T1 was in flight and delivers it on the next read.
func TestSnapshotTokensDeliverLateCommitsThatAnIDCursorLoses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	q := db.New(pool)

	var user uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO users (email, password_hash, display_name) VALUES ('r@example.com', 'x', 'R') RETURNING id`).Scan(&user))
	var roomA, roomB uuid.UUID
	for _, r := range []*uuid.UUID{&roomA, &roomB} {
		room, err := q.CreateRoom(ctx, db.CreateRoomParams{Name: "r", Visibility: "public", OwnerID: user})
		require.NoError(t, err)
		*r = room.ID
		require.NoError(t, q.OpenPeriod(ctx, db.OpenPeriodParams{RoomID: room.ID, UserID: user, FromSeq: 1}))
	}
	start, err := events.Current(ctx, q)
	require.NoError(t, err)

	// T1 writes in room A and stays open; T2 writes in room B and commits.
	t1, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer t1.Rollback(ctx) //nolint:errcheck
	late := appendIn(t, t1, roomA, user)
	var t1xid string
	require.NoError(t, t1.QueryRow(ctx, "SELECT pg_current_xact_id()::text").Scan(&t1xid))
	t2, err := pool.Begin(ctx)
	require.NoError(t, err)
	early := appendIn(t, t2, roomB, user)
	require.NoError(t, t2.Commit(ctx))

	// Both readers see T2's event first.
	page, err := testLog.Read(ctx, q, user, start, 100)
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	require.Equal(t, early.RoomID, page.Events[0].RoomID)

	var naiveCursor string // the naive reader's "highest id seen"
	require.NoError(t, pool.QueryRow(ctx, "SELECT max(xid)::text FROM room_events").Scan(&naiveCursor))
	require.Greater(t, naiveCursor, "", "the naive reader saw T2's event")

	// T1 commits late.
	require.NoError(t, t1.Commit(ctx))

	// The naive reader asks for ids above its cursor: T1's event is below it, lost forever.
	var naiveMissed int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM room_events WHERE xid > $1::text::xid8", naiveCursor).Scan(&naiveMissed))
	require.Equal(t, 0, naiveMissed, "an id cursor finds nothing new")
	var lateIsBelow bool
	require.NoError(t, pool.QueryRow(ctx, "SELECT $1::text::xid8 < $2::text::xid8", t1xid, naiveCursor).Scan(&lateIsBelow))
	require.True(t, lateIsBelow, "T1 started first, so its id is below the cursor")

	// The snapshot token delivers it.
	page, err = testLog.Read(ctx, q, user, page.Next, 100)
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	require.Equal(t, late.RoomID, page.Events[0].RoomID)
	require.Equal(t, late.Seq, page.Events[0].Seq)

	// And only once.
	page, err = testLog.Read(ctx, q, user, page.Next, 100)
	require.NoError(t, err)
	require.Empty(t, page.Events)
}

func TestReadPagesThroughOneSnapshotInRoomSeqOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	q := db.New(pool)
	var user uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO users (email, password_hash, display_name) VALUES ('p@example.com', 'x', 'P') RETURNING id`).Scan(&user))
	room, err := q.CreateRoom(ctx, db.CreateRoomParams{Name: "r", Visibility: "public", OwnerID: user})
	require.NoError(t, err)
	// The reader's stretch starts at seq 3: events 1 and 2 are before its join.
	require.NoError(t, q.OpenPeriod(ctx, db.OpenPeriodParams{RoomID: room.ID, UserID: user, FromSeq: 3}))
	start, err := events.Current(ctx, q)
	require.NoError(t, err)
	for i := 0; i < 7; i++ {
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		appendIn(t, tx, room.ID, user)
		require.NoError(t, tx.Commit(ctx))
	}
	var seqs []int64
	tok := start
	for {
		page, err := testLog.Read(ctx, q, user, tok, 2)
		require.NoError(t, err)
		for _, e := range page.Events {
			seqs = append(seqs, e.Seq)
		}
		tok = page.Next
		if !page.HasMore {
			break
		}
	}
	require.Equal(t, []int64{3, 4, 5, 6, 7}, seqs)
}
