package httpapi_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

// syncAll follows next_token until caught up and returns every event received.
func syncAll(t *testing.T, c *apiclient.ClientWithResponses, token string) ([]apiclient.RoomEvent, string) {
	t.Helper()
	var all []apiclient.RoomEvent
	for {
		res, err := c.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &token})
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode(), string(res.Body))
		all = append(all, res.JSON200.Events...)
		token = res.JSON200.NextToken
		if !res.JSON200.HasMore && len(res.JSON200.Events) == 0 {
			return all, token
		}
	}
}

func TestSyncBasics(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob := s.Register(t, "ann"), s.Register(t, "bob")
	room := parlortest.CreateRoom(t, ann, "basics", apiclient.VisibilityPublic)

	fresh, err := bob.Client.SyncWithResponse(ctx, &apiclient.SyncParams{})
	require.NoError(t, err)
	require.Equal(t, 200, fresh.StatusCode(), string(fresh.Body))
	require.Empty(t, fresh.JSON200.Events)
	require.NotNil(t, fresh.JSON200.Rooms)
	require.Empty(t, *fresh.JSON200.Rooms, "bob is in no room yet")
	token := fresh.JSON200.NextToken

	// Before bob joins, ann's messages are not his; from his join on, everything is.
	parlortest.Send(t, ann, room.Id, "before bob")
	_, err = bob.Client.JoinRoomWithResponse(ctx, room.Id, nil)
	require.NoError(t, err)
	m := parlortest.Send(t, ann, room.Id, "after bob")
	_, err = bob.Client.MarkReadWithResponse(ctx, room.Id, apiclient.MarkReadJSONRequestBody{Seq: m.Seq})
	require.NoError(t, err)

	evs, next := syncAll(t, bob.Client, token)
	require.Len(t, evs, 3, "%+v", evs)
	require.Equal(t, apiclient.MemberJoined, evs[0].Type)
	require.Equal(t, bob.ID, *evs[0].UserId)
	require.Equal(t, apiclient.RoleMember, evs[0].Member.Role)
	require.Equal(t, apiclient.MessageCreated, evs[1].Type)
	require.Equal(t, "after bob", *evs[1].Message.Body)
	require.Equal(t, apiclient.ReadUpdated, evs[2].Type)
	require.Equal(t, m.Seq, *evs[2].ReadSeq)
	for i := 1; i < len(evs); i++ {
		require.Equal(t, evs[i-1].Seq+1, evs[i].Seq, "gap-free")
	}

	// A deleted message is a tombstone in every event that refers to it.
	_, err = ann.Client.DeleteMessageWithResponse(ctx, room.Id, m.Id)
	require.NoError(t, err)
	evs, next = syncAll(t, bob.Client, next)
	require.Len(t, evs, 1)
	require.Equal(t, apiclient.MessageDeleted, evs[0].Type)
	require.Nil(t, evs[0].Message.Body)
	again, _ := syncAll(t, bob.Client, token)
	require.NotContains(t, fmt.Sprint(again), "after bob", "the body is gone from every read path")

	// Nothing new: an empty page with the same token.
	res, err := bob.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &next})
	require.NoError(t, err)
	require.Empty(t, res.JSON200.Events)
	require.Equal(t, next, res.JSON200.NextToken)

	// A long-poll waits for the next event and returns it.
	got := make(chan []apiclient.RoomEvent, 1)
	go func() {
		timeout := 10000
		res, err := bob.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &next, TimeoutMs: &timeout})
		if err != nil || res.JSON200 == nil {
			got <- nil
			return
		}
		got <- res.JSON200.Events
	}()
	time.Sleep(100 * time.Millisecond)
	parlortest.Send(t, ann, room.Id, "wake up")
	select {
	case evs := <-got:
		require.Len(t, evs, 1)
		require.Equal(t, "wake up", *evs[0].Message.Body)
	case <-time.After(8 * time.Second):
		t.Fatal("the long-poll was not woken by the new message")
	}

	// A long-poll with nothing new ends with an empty page and the same token.
	timeout := 200
	res, err = bob.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &next, TimeoutMs: &timeout})
	require.NoError(t, err)
	require.Len(t, res.JSON200.Events, 1, "the unread message is still there for this token")
	last := res.JSON200.NextToken
	res, err = bob.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &last, TimeoutMs: &timeout})
	require.NoError(t, err)
	require.Empty(t, res.JSON200.Events)
	require.Equal(t, last, res.JSON200.NextToken)

	// After leaving, nothing more from the room.
	_, err = bob.Client.LeaveRoomWithResponse(ctx, room.Id)
	require.NoError(t, err)
	parlortest.Send(t, ann, room.Id, "after bob left")
	evs, _ = syncAll(t, bob.Client, last)
	require.Len(t, evs, 1)
	require.Equal(t, apiclient.MemberLeft, evs[0].Type)
}

func TestSyncPagesKeepPerRoomOrder(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann := s.Register(t, "ann")
	fresh, err := ann.Client.SyncWithResponse(ctx, &apiclient.SyncParams{})
	require.NoError(t, err)
	var rooms []uuid.UUID
	for i := 0; i < 3; i++ {
		r := parlortest.CreateRoom(t, ann, fmt.Sprintf("r%d", i), apiclient.VisibilityPublic)
		rooms = append(rooms, r.Id)
	}
	for i := 0; i < 10; i++ {
		parlortest.Send(t, ann, rooms[i%3], fmt.Sprintf("m%d", i))
	}
	// 3 joins + 10 messages, read 4 at a time.
	token, limit := fresh.JSON200.NextToken, 4
	seen := map[uuid.UUID][]int64{}
	pages := 0
	for {
		res, err := ann.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &token, Limit: &limit})
		require.NoError(t, err)
		require.LessOrEqual(t, len(res.JSON200.Events), limit)
		for _, e := range res.JSON200.Events {
			seen[e.RoomId] = append(seen[e.RoomId], e.Seq)
		}
		token = res.JSON200.NextToken
		pages++
		if !res.JSON200.HasMore {
			break
		}
	}
	require.GreaterOrEqual(t, pages, 4)
	total := 0
	for _, r := range rooms {
		seqs := seen[r]
		total += len(seqs)
		for i, seq := range seqs {
			require.Equal(t, int64(i+1), seq, "room %s: %v", r, seqs)
		}
	}
	require.Equal(t, 13, total)
}

// TestSyncIsExactUnderConcurrentWritersOnTwoInstances is the sync exactness proof: 16
// writers on two instances (sharing PostgreSQL and Redis) send, edit, delete, react, leave
// and rejoin in 8 rooms while a reader, whose own membership changes too, follows
// next_token with long-polls against both instances. At the end the reader must hold every
// committed event of its membership stretches exactly once, in per-room seq order — the
// expectation computed from the raw event table, not from the sync code.
func TestSyncIsExactUnderConcurrentWritersOnTwoInstances(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("long concurrency test")
	}
	cfg := parlortest.Config(t)
	a := parlortest.Start(t, cfg)
	b := parlortest.Start(t, cfg) // same database, same Redis prefix: a second instance

	owner := a.Register(t, "owner")
	reader := a.Register(t, "reader")
	readerOn := []*apiclient.ClientWithResponses{reader.Client, b.NewClient(parlortest.Bearer(reader.AccessToken))}

	const nRooms, nWriters = 8, 16
	rooms := make([]uuid.UUID, nRooms)
	for i := range rooms {
		rooms[i] = parlortest.CreateRoom(t, owner, fmt.Sprintf("room-%d", i), apiclient.VisibilityPublic).Id
	}
	type writer struct {
		clients []*apiclient.ClientWithResponses
		member  map[uuid.UUID]bool
		last    map[uuid.UUID]uuid.UUID // the writer's latest message per room
	}
	writers := make([]*writer, nWriters)
	for i := range writers {
		u := a.Register(t, fmt.Sprintf("w%d", i))
		w := &writer{clients: []*apiclient.ClientWithResponses{u.Client, b.NewClient(parlortest.Bearer(u.AccessToken))},
			member: map[uuid.UUID]bool{}, last: map[uuid.UUID]uuid.UUID{}}
		for _, r := range rooms {
			res, err := u.Client.JoinRoomWithResponse(ctx, r, nil)
			require.NoError(t, err)
			require.Equal(t, 200, res.StatusCode())
			w.member[r] = true
		}
		writers[i] = w
	}
	// The reader starts in half the rooms.
	readerIn := map[uuid.UUID]bool{}
	for _, r := range rooms[:nRooms/2] {
		res, err := reader.Client.JoinRoomWithResponse(ctx, r, nil)
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode())
		readerIn[r] = true
	}
	fresh, err := reader.Client.SyncWithResponse(ctx, &apiclient.SyncParams{})
	require.NoError(t, err)
	startToken := fresh.JSON200.NextToken
	// Everything up to now is before the reader's start: the baseline per room.
	baseline := map[uuid.UUID]int64{}
	for _, r := range rooms {
		var last int64
		require.NoError(t, a.Pool.QueryRow(ctx, "SELECT last_seq FROM rooms WHERE id = $1", r).Scan(&last))
		baseline[r] = last
	}

	// Writers run for at least 3 seconds and until 800 events were written (at most 30 s),
	// so a loaded machine still produces enough interleaving to prove something.
	runCtx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	go func() {
		minimum := time.After(3 * time.Second)
		<-minimum
		for runCtx.Err() == nil {
			var n int
			if err := a.Pool.QueryRow(ctx, "SELECT count(*) FROM room_events").Scan(&n); err == nil && n >= 800 {
				stop()
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	for i, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			for runCtx.Err() == nil {
				c := w.clients[rng.IntN(2)]
				r := rooms[rng.IntN(nRooms)]
				if !w.member[r] {
					res, err := c.JoinRoomWithResponse(ctx, r, nil)
					if err == nil && res.StatusCode() == 200 {
						w.member[r] = true
					}
					continue
				}
				last, hasLast := w.last[r]
				switch p := rng.IntN(100); {
				case p < 70 || !hasLast:
					res, err := c.SendMessageWithResponse(ctx, r, apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: fmt.Sprintf("w%d says %d", i, p)})
					if err == nil && res.JSON201 != nil {
						w.last[r] = res.JSON201.Id
					}
				case p < 80:
					_, _ = c.EditMessageWithResponse(ctx, r, last, apiclient.EditMessageJSONRequestBody{Body: "edited"})
				case p < 87:
					_, _ = c.DeleteMessageWithResponse(ctx, r, last)
					delete(w.last, r)
				case p < 94:
					_, _ = c.AddReactionWithResponse(ctx, r, last, "👍")
				default:
					res, err := c.LeaveRoomWithResponse(ctx, r)
					if err == nil && res.StatusCode() == 204 {
						w.member[r] = false
						delete(w.last, r)
					}
				}
			}
		}()
	}
	// The reader's own membership changes while it reads.
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(99, 7))
		for runCtx.Err() == nil {
			r := rooms[rng.IntN(nRooms)]
			c := readerOn[rng.IntN(2)]
			if readerIn[r] {
				if res, err := c.LeaveRoomWithResponse(ctx, r); err == nil && res.StatusCode() == 204 {
					readerIn[r] = false
				}
			} else if res, err := c.JoinRoomWithResponse(ctx, r, nil); err == nil && res.StatusCode() == 200 {
				readerIn[r] = true
			}
			time.Sleep(time.Duration(20+rng.IntN(60)) * time.Millisecond)
		}
	}()

	// The reader follows next_token with long-polls and small pages, alternating instances.
	received := map[uuid.UUID][]int64{}
	types := map[string]string{}
	token := startToken
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		limit, timeout := 37, 500
		for i := 0; ; i++ {
			res, err := readerOn[i%2].SyncWithResponse(ctx, &apiclient.SyncParams{Since: &token, Limit: &limit, TimeoutMs: &timeout})
			if err != nil || res.StatusCode() != 200 {
				t.Errorf("sync: %v %s", err, res.Body)
				return
			}
			for _, e := range res.JSON200.Events {
				received[e.RoomId] = append(received[e.RoomId], e.Seq)
				types[fmt.Sprintf("%s/%d", e.RoomId, e.Seq)] = string(e.Type)
			}
			token = res.JSON200.NextToken
			if runCtx.Err() != nil && !res.JSON200.HasMore && len(res.JSON200.Events) == 0 {
				return // writers have stopped and the reader is caught up
			}
		}
	}()
	wg.Wait()
	<-readerDone

	// The expectation, from the raw log: the reader's stretches of each room run from each of
	// its member.joined events to the member.left that follows (or the end).
	expected := map[uuid.UUID][]int64{}
	total := 0
	for _, r := range rooms {
		rows, err := a.Pool.Query(ctx, `SELECT seq, type, user_id FROM room_events WHERE room_id = $1 AND seq > $2 ORDER BY seq`, r, baseline[r])
		require.NoError(t, err)
		in := readerInAt(t, a, r, reader.ID, baseline[r])
		for rows.Next() {
			var seq int64
			var typ string
			var user *uuid.UUID
			require.NoError(t, rows.Scan(&seq, &typ, &user))
			isReader := user != nil && *user == reader.ID
			if typ == "member.joined" && isReader {
				in = true
			}
			if in {
				expected[r] = append(expected[r], seq)
				require.Equal(t, typ, types[fmt.Sprintf("%s/%d", r, seq)], "room %s seq %d has the wrong type or is missing", r, seq)
			}
			if isReader && (typ == "member.left" || typ == "member.kicked" || typ == "member.banned") {
				in = false
			}
		}
		require.NoError(t, rows.Err())
		total += len(expected[r])
	}
	for _, r := range rooms {
		got := received[r]
		require.True(t, sort.SliceIsSorted(got, func(i, j int) bool { return got[i] < got[j] }), "room %s out of order", r)
		require.Equal(t, expected[r], got, "room %s: the reader's events differ from the committed log", r)
	}
	var writes int
	require.NoError(t, a.Pool.QueryRow(ctx, "SELECT count(*) FROM room_events").Scan(&writes))
	t.Logf("%d events written in total; the reader received exactly the %d of its stretches", writes, total)
	require.Greater(t, total, 150, "too little concurrency to prove anything")
}

// readerInAt reports whether user was a member of room right after seq.
func readerInAt(t *testing.T, s *parlortest.Server, room, user uuid.UUID, seq int64) bool {
	var typ string
	err := s.Pool.QueryRow(ctx, `SELECT type FROM room_events WHERE room_id = $1 AND user_id = $2 AND seq <= $3
		AND type IN ('member.joined','member.left','member.kicked','member.banned') ORDER BY seq DESC LIMIT 1`, room, user, seq).Scan(&typ)
	if err != nil {
		return false
	}
	return typ == "member.joined"
}
