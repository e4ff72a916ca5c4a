package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/config"
)

// seedUsers is how many seeded users own and populate the rooms the reader is not in.
const seedUsers = 100

// runSync seeds o.messages messages over o.rooms rooms, with a reader who is a member of
// o.userRooms of them, and times GET /v1/sync for the reader: caught up, with new events
// between requests, and fresh (no since).
//
// The seeded log of room k: seq 1 its owner's member.joined, seq 2 its second member's
// member.joined, seq 3… its messages (authors alternate between the two members). Every
// (R/U)-th room belongs to the reader (second member) and the poster (owner), both
// registered through the API; the other rooms to seeded users. Rooms, members, periods and
// last_seq are as Parlor itself would have written them (migrations/00002_rooms.sql).
func runSync(ctx context.Context, o options, rep *report) error {
	const bench = "sync"
	d, err := newDatabase(ctx, bench)
	if err != nil {
		return err
	}
	defer d.drop()
	progress(bench, "database %s ready", d.name)
	srv, err := startServer(ctx, d.url)
	if err != nil {
		return err
	}
	defer srv.close()
	reader, err := srv.register(ctx, "reader")
	if err != nil {
		return err
	}
	poster, err := srv.register(ctx, "poster")
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, d.url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// A token from before the seed: every seeded event of the reader's rooms is behind it.
	before, err := syncOnce(ctx, reader.Client, nil)
	if err != nil {
		return fmt.Errorf("the token before the seed: %w", err)
	}
	sd, err := seed(ctx, conn, o, reader.ID, poster.ID)
	if err != nil {
		return err
	}

	// The HTTP floor: an unauthenticated endpoint that touches nothing.
	anon := srv.client("")
	health, err := timeRequests(ctx, 100, o.requests/2, 10*time.Second, func() error {
		res, err := anon.GetHealthWithResponse(ctx)
		if err == nil && res.StatusCode() != 200 {
			err = fmt.Errorf("status %d", res.StatusCode())
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("GET /healthz: %w", err)
	}
	progress(bench, "GET /healthz (HTTP floor): p50 / p99 %s", p50p99(health))

	// Fresh sync: the token and the reader's rooms with unread counts.
	var token string
	var unread int64
	fresh, err := timeRequests(ctx, 10, max(20, o.requests/10), 15*time.Second, func() error {
		page, err := syncOnce(ctx, reader.Client, nil)
		if err != nil {
			return err
		}
		if page.Rooms == nil || len(*page.Rooms) != o.userRooms {
			return fmt.Errorf("a fresh sync listed %d rooms, want %d", lenRooms(page.Rooms), o.userRooms)
		}
		unread = 0
		for _, r := range *page.Rooms {
			if r.Membership != nil {
				unread += r.Membership.UnreadCount
			}
		}
		token = page.NextToken
		return nil
	})
	if err != nil {
		return fmt.Errorf("fresh sync: %w", err)
	}
	progress(bench, "fresh sync (%d rooms, %s unread): p50 / p99 %s over %d requests", o.userRooms, thousands(unread), p50p99(fresh), len(fresh))

	// The rooms list: a page of the reader's rooms with their unread counts.
	scope, pageSize := apiclient.ListRoomsParamsScopeJoined, 100
	roomsList, err := timeRequests(ctx, 10, max(20, o.requests/10), 15*time.Second, func() error {
		res, err := reader.Client.ListRoomsWithResponse(ctx, &apiclient.ListRoomsParams{Scope: &scope, Limit: &pageSize})
		if err != nil {
			return err
		}
		if res.JSON200 == nil || len(res.JSON200.Items) != min(pageSize, o.userRooms) {
			return fmt.Errorf("GET /v1/rooms: status %d: %.200s", res.StatusCode(), res.Body)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rooms list: %w", err)
	}
	progress(bench, "rooms list (%d of %d rooms): p50 / p99 %s over %d requests", min(pageSize, o.userRooms), o.userRooms, p50p99(roomsList), len(roomsList))

	caughtUp, err := timeCaughtUp(ctx, reader.Client, token, o.requests)
	if err != nil {
		return err
	}
	progress(bench, "caught-up sync: p50 / p99 %s over %d requests", p50p99(caughtUp), len(caughtUp))

	hot := sd.readerRooms[:min(4, len(sd.readerRooms))]
	live, err := timeLive(ctx, reader.Client, poster.Client, hot, token, o.requests/2)
	if err != nil {
		return err
	}
	progress(bench, "sync with 1 new event: p50 / p99 %s over %d requests", p50p99(live), len(live))

	// The token from before the seed is far past APP_SYNC_MAX_BACKLOG: the answer is 410 at
	// the cost of reading the bound's worth of index entries, not the whole backlog.
	const oldRequests = 50
	var behind int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM room_events WHERE room_id = ANY($1)", sd.readerRooms).Scan(&behind); err != nil {
		return err
	}
	refused, err := timeRequests(ctx, 3, oldRequests, phaseBudget, func() error {
		res, err := reader.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &before.NextToken})
		if err == nil && res.StatusCode() != http.StatusGone {
			err = fmt.Errorf("a token %s events behind: status %d, want 410: %.200s", thousands(behind), res.StatusCode(), res.Body)
		}
		return err
	})
	if err != nil {
		return err
	}
	progress(bench, "a token from before the seed, refused (410): p50 / p99 %s", p50p99(refused))
	// What the first page from that token costs with the bound lifted: what every page of a
	// catch-up cost before there was one.
	lifted, err := startServer(ctx, d.url, func(c *config.Config) { c.SyncMaxBacklog = 1_000_000 })
	if err != nil {
		return err
	}
	unbounded, err := timeRequests(ctx, 1, 10, phaseBudget, func() error {
		page, err := syncOnce(ctx, lifted.client(reader.Token), &before.NextToken)
		if err == nil && (len(page.Events) == 0 || !page.HasMore) {
			err = fmt.Errorf("the first page from before the seed had %d events (has_more %v)", len(page.Events), page.HasMore)
		}
		return err
	})
	lifted.close()
	if err != nil {
		return err
	}
	progress(bench, "the same token with APP_SYNC_MAX_BACKLOG=1000000, first page: p50 / p99 %s", p50p99(unbounded))

	goal := 5 * time.Millisecond // DESIGN.md: p99 ≤ 5 ms
	rep.add(bench, fmt.Sprintf("GET /v1/sync caught up: user in %d rooms, %s messages", o.userRooms, thousands(sd.messages)),
		p50p99(caughtUp), "p99 ≤ 5 ms", verdict(caughtUp.percentile(99) <= goal))
	rep.add(bench, fmt.Sprintf("GET /v1/sync, 1 new event (in 1 of %d rooms) since the last", len(hot)),
		p50p99(live), "p99 ≤ 5 ms", verdict(live.percentile(99) <= goal))
	rep.add(bench, fmt.Sprintf("GET /v1/rooms?limit=%d: the first page of a user's %d rooms, with unread counts", pageSize, o.userRooms),
		p50p99(roomsList), "p99 ≤ 5 ms", verdict(roomsList.percentile(99) <= goal))
	rep.add(bench, fmt.Sprintf("GET /v1/sync fresh (no since): %d rooms with unread counts", o.userRooms), p50p99(fresh), "", "")
	rep.add(bench, "GET /healthz (HTTP floor: no auth, no database)", p50p99(health), "", "")
	rep.add(bench, fmt.Sprintf("GET /v1/sync from a token %s events behind (all of the reader's rooms' log): 410, past APP_SYNC_MAX_BACKLOG (10,000)", thousands(behind)),
		p50p99(refused), "", "")
	rep.add(bench, "  the same token's first page with the bound lifted to 1,000,000 (each page of a catch-up before the bound)", p50p99(unbounded), "", "")

	if o.diagnose {
		if err := explainSync(ctx, d, reader.ID); err != nil {
			progress(bench, "explain: %v", err)
		}
		// The same server with every statement planned for its parameters.
		custom, err := withRuntimeParam(d.url, "plan_cache_mode", "force_custom_plan")
		if err != nil {
			return err
		}
		srv2, err := startServer(ctx, custom)
		if err != nil {
			return err
		}
		defer srv2.close()
		c2 := srv2.client(reader.Token)
		page, err := syncOnce(ctx, c2, nil)
		if err != nil {
			return err
		}
		diag, err := timeCaughtUp(ctx, c2, page.NextToken, o.requests)
		if err != nil {
			return err
		}
		diagLive, err := timeLive(ctx, c2, srv2.client(poster.Token), hot, page.NextToken, o.requests/2)
		if err != nil {
			return err
		}
		progress(bench, "diagnostic, plan_cache_mode=force_custom_plan: caught up p50 / p99 %s, 1 new event %s", p50p99(diag), p50p99(diagLive))
		rep.add(bench, "  diagnostic: caught up, server with plan_cache_mode=force_custom_plan", p50p99(diag), "", "")
		rep.add(bench, "  diagnostic: 1 new event, server with plan_cache_mode=force_custom_plan", p50p99(diagLive), "", "")
	}
	rep.add(bench, "seeding (messages + events, then VACUUM ANALYZE)", fmt.Sprintf("%.1f s + %.1f s", sd.insert.Seconds(), sd.vacuum.Seconds()), "< 2 min", verdict(sd.insert+sd.vacuum < 2*time.Minute))
	rep.note("sync: %s messages (%s room_events) over %s rooms; the reader is a member of %d rooms (%s unread at the fresh sync); "+
		"sequential requests over one keep-alive connection after warm-up, each phase capped at %s: %d caught up, %d with a new event, %d fresh; Redis %s.",
		thousands(sd.messages), thousands(sd.events), thousands(int64(o.rooms)), o.userRooms, thousands(unread),
		phaseBudget, len(caughtUp), len(live), len(fresh), onOff(redisURL() != ""))
	return nil
}

// phaseBudget caps each timed phase of the sync benchmark, so a slow sync costs a few
// hundred samples rather than minutes.
const phaseBudget = 20 * time.Second

// timeCaughtUp times syncs from a token after which nothing happened.
func timeCaughtUp(ctx context.Context, c *apiclient.ClientWithResponses, token string, n int) (latencies, error) {
	lat, err := timeRequests(ctx, 100, n, phaseBudget, func() error {
		page, err := syncOnce(ctx, c, &token)
		if err != nil {
			return err
		}
		if len(page.Events) != 0 || page.HasMore {
			return fmt.Errorf("a caught-up sync returned %d events", len(page.Events))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("caught-up sync: %w", err)
	}
	return lat, nil
}

// timeLive has the poster send a message to one of a few of the reader's rooms between
// two syncs of the reader; only the sync is timed, and it must return exactly that message.
func timeLive(ctx context.Context, reader, poster *apiclient.ClientWithResponses, hot []uuid.UUID, token string, n int) (latencies, error) {
	const warmup = 20
	out := make(latencies, 0, n)
	start := time.Now()
	for i := 0; i < warmup+n && (i < warmup+20 || time.Since(start) < phaseBudget); i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res, err := poster.SendMessageWithResponse(ctx, hot[i%len(hot)], apiclient.SendMessageJSONRequestBody{
			ClientMsgId: uuid.New(), Body: fmt.Sprintf("live message %d", i),
		})
		if err != nil {
			return nil, fmt.Errorf("live send: %w", err)
		}
		if res.JSON201 == nil {
			return nil, fmt.Errorf("live send: status %d: %s", res.StatusCode(), res.Body)
		}
		t0 := time.Now()
		page, err := syncOnce(ctx, reader, &token)
		elapsed := time.Since(t0)
		if err != nil {
			return nil, fmt.Errorf("live sync: %w", err)
		}
		if len(page.Events) != 1 || page.Events[0].Message == nil || page.Events[0].Message.Id != res.JSON201.Id {
			return nil, fmt.Errorf("live sync %d returned %d events, want the one message just sent", i, len(page.Events))
		}
		token = page.NextToken
		if i >= warmup {
			out = append(out, elapsed)
		}
	}
	return out, nil
}

// withRuntimeParam adds a PostgreSQL run-time parameter to a connection URL (pgx sends
// unknown URL parameters as such).
func withRuntimeParam(raw, name, value string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set(name, value)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func lenRooms(r *[]apiclient.Room) int {
	if r == nil {
		return 0
	}
	return len(*r)
}

// syncOnce calls GET /v1/sync without waiting.
func syncOnce(ctx context.Context, c *apiclient.ClientWithResponses, since *string) (*apiclient.SyncPage, error) {
	res, err := c.SyncWithResponse(ctx, &apiclient.SyncParams{Since: since})
	if err != nil {
		return nil, err
	}
	if res.JSON200 == nil {
		return nil, fmt.Errorf("status %d: %s", res.StatusCode(), res.Body)
	}
	return res.JSON200, nil
}

// timeRequests runs fn warmup times untimed, then n times timed, one after another, but
// stops timing once budget has passed (with at least 20 samples).
func timeRequests(ctx context.Context, warmup, n int, budget time.Duration, fn func() error) (latencies, error) {
	out := make(latencies, 0, n)
	var start time.Time
	for i := 0; i < warmup+n; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if i == warmup {
			start = time.Now()
		}
		if i > warmup+20 && time.Since(start) > budget {
			break
		}
		t0 := time.Now()
		if err := fn(); err != nil {
			return nil, err
		}
		if i >= warmup {
			out = append(out, time.Since(t0))
		}
	}
	return out, nil
}

// seeded is what seed wrote.
type seeded struct {
	messages, events int64
	readerRooms      []uuid.UUID
	insert, vacuum   time.Duration
}

// seed writes the rooms, memberships and message log with server-side SQL, in batches of
// about 50,000 messages (every room's next few seqs, so rooms interleave in the heap as
// live traffic would), then VACUUM ANALYZEs.
func seed(ctx context.Context, conn *pgx.Conn, o options, reader, poster uuid.UUID) (seeded, error) {
	const bench = "sync"
	perRoom := o.messages / o.rooms
	step := o.rooms / o.userRooms
	lastSeq := int64(perRoom + 2)
	start := time.Now()
	steps := []struct {
		what string
		sql  string
		args []any
	}{
		{"seed users", `INSERT INTO users (email, password_hash, display_name)
			SELECT 'seed-' || i || '@bench.invalid', 'seeded, no password', 'Seed ' || i FROM generate_series(0, $1::int - 1) i`,
			[]any{seedUsers}},
		{"room plan", `CREATE TEMP TABLE seed_rooms (k integer PRIMARY KEY, id uuid NOT NULL DEFAULT gen_random_uuid(),
			owner_id uuid NOT NULL, member_id uuid NOT NULL, mine boolean NOT NULL)`, nil},
		{"room plan", `WITH su AS (SELECT id, (substring(email FROM 'seed-(\d+)@'))::int AS i FROM users WHERE email LIKE 'seed-%@bench.invalid'),
			g AS (SELECT k, (k % $1::int = 0 AND k / $1::int < $2::int) AS mine FROM generate_series(0, $3::int - 1) k)
			INSERT INTO seed_rooms (k, owner_id, member_id, mine)
			SELECT k, CASE WHEN mine THEN $4::uuid ELSE (SELECT id FROM su WHERE i = k % $6::int) END,
			          CASE WHEN mine THEN $5::uuid ELSE (SELECT id FROM su WHERE i = (k + 1) % $6::int) END, mine
			FROM g`, []any{step, o.userRooms, o.rooms, poster, reader, seedUsers}},
		{"rooms", `INSERT INTO rooms (id, name, topic, visibility, owner_id, member_count, last_seq, created_at, updated_at)
			SELECT id, 'Seeded room ' || k, '', CASE WHEN k % 2 = 0 THEN 'public' ELSE 'private' END, owner_id, 2, $1::bigint,
			       now() - interval '30 days', now() - interval '30 days'
			FROM seed_rooms`, []any{lastSeq}},
		// Unread counts stay small (0–49 per room): readers mostly keep up.
		{"members", `INSERT INTO room_members (room_id, user_id, role, joined_at, joined_seq, read_seq)
			SELECT id, owner_id, 'owner', now() - interval '30 days' + k * interval '1 second', 1, greatest(1, $1::bigint - k % 50) FROM seed_rooms
			UNION ALL
			SELECT id, member_id, 'member', now() - interval '29 days' + k * interval '1 second', 2, greatest(2, $1::bigint - (k / 7) % 50) FROM seed_rooms`,
			[]any{lastSeq}},
		{"membership periods", `INSERT INTO room_member_periods (room_id, user_id, from_seq)
			SELECT id, owner_id, 1 FROM seed_rooms UNION ALL SELECT id, member_id, 2 FROM seed_rooms`, nil},
		{"join events", `INSERT INTO room_events (room_id, seq, type, actor_id, user_id, data, created_at)
			SELECT r.id, 1, 'member.joined', r.owner_id, r.owner_id, jsonb_build_object('role', 'owner', 'display_name', u.display_name),
			       now() - interval '30 days' + r.k * interval '1 second'
			FROM seed_rooms r JOIN users u ON u.id = r.owner_id
			UNION ALL
			SELECT r.id, 2, 'member.joined', r.member_id, r.member_id, jsonb_build_object('role', 'member', 'display_name', u.display_name),
			       now() - interval '29 days' + r.k * interval '1 second'
			FROM seed_rooms r JOIN users u ON u.id = r.member_id`, nil},
	}
	for _, s := range steps {
		if _, err := conn.Exec(ctx, s.sql, s.args...); err != nil {
			return seeded{}, fmt.Errorf("seed %s: %w", s.what, err)
		}
	}
	progress(bench, "seeded %d users, %s rooms (%d with the reader), memberships and join events",
		seedUsers, thousands(int64(o.rooms)), o.userRooms)

	const insertMessages = `WITH m AS (
		INSERT INTO messages (room_id, seq, author_id, client_msg_id, body, created_at)
		SELECT r.id, s.seq, CASE WHEN s.seq % 2 = 0 THEN r.owner_id ELSE r.member_id END, gen_random_uuid(),
		       'Seeded message ' || s.seq || ' of room ' || r.k, now() - interval '29 days' + s.seq * interval '1 minute'
		FROM generate_series($1::bigint, $2::bigint) s(seq) CROSS JOIN seed_rooms r
		ORDER BY s.seq, r.k
		RETURNING id, room_id, seq, author_id, created_at)
	INSERT INTO room_events (room_id, seq, type, actor_id, message_id, created_at)
	SELECT room_id, seq, 'message.created', author_id, id, created_at FROM m`
	seqsPerBatch := max(1, 50_000/o.rooms)
	var done int64
	total := int64(perRoom) * int64(o.rooms)
	for from := int64(3); from <= lastSeq; from += int64(seqsPerBatch) {
		to := min(lastSeq, from+int64(seqsPerBatch)-1)
		tag, err := conn.Exec(ctx, insertMessages, from, to)
		if err != nil {
			return seeded{}, fmt.Errorf("seed messages %d–%d: %w", from, to, err)
		}
		done += tag.RowsAffected()
		el := time.Since(start)
		progress(bench, "seeded %s/%s messages with their events (%.0f%%, %.1fs, %s rows/s)",
			thousands(done), thousands(total), 100*float64(done)/float64(total), el.Seconds(), thousands(int64(float64(2*done)/el.Seconds())))
	}
	out := seeded{insert: time.Since(start)}

	progress(bench, "VACUUM ANALYZE")
	vstart := time.Now()
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) users, rooms, room_members, room_member_periods, messages, room_events"); err != nil {
		return seeded{}, fmt.Errorf("vacuum analyze: %w", err)
	}
	out.vacuum = time.Since(vstart)

	// Check the seed is consistent the way Parlor's writes are.
	var bad int64
	err := conn.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM messages),
		(SELECT count(*) FROM room_events),
		(SELECT count(*) FROM rooms r WHERE r.last_seq <> (SELECT max(seq) FROM room_events e WHERE e.room_id = r.id)
		   OR r.last_seq - 2 <> (SELECT count(*) FROM messages m WHERE m.room_id = r.id))`).Scan(&out.messages, &out.events, &bad)
	if err != nil {
		return seeded{}, err
	}
	if bad != 0 || out.messages != total {
		return seeded{}, fmt.Errorf("seed check: %d messages (want %d), %d rooms whose last_seq is not their log's end", out.messages, total, bad)
	}
	rows, err := conn.Query(ctx, "SELECT id FROM seed_rooms WHERE mine ORDER BY k")
	if err != nil {
		return seeded{}, err
	}
	out.readerRooms, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return seeded{}, err
	}
	if len(out.readerRooms) != o.userRooms {
		return seeded{}, fmt.Errorf("seed check: the reader is in %d rooms, want %d", len(out.readerRooms), o.userRooms)
	}
	progress(bench, "seeded in %.1fs, VACUUM ANALYZE %.1fs; checked: last_seq = log end everywhere",
		out.insert.Seconds(), out.vacuum.Seconds())
	return out, nil
}

// explainSync prints the plans of the SyncEvents query (read from db/queries/events.sql, so
// it is the product's current one) for a caught-up read: planned for its parameters
// (custom), and the plan PostgreSQL keeps for a prepared statement after five executions
// (auto) — which is what the server gets, since pgx prepares and caches its statements.
func explainSync(ctx context.Context, d *database, user uuid.UUID) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	query, names, err := sqlcQuery(filepath.Join(root, "db", "queries", "events.sql"), "SyncEvents")
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, d.url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var snap string
	if err := conn.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&snap); err != nil {
		return err
	}
	// Literals of values the benchmark made (uuids, a snapshot's digits and colons, numbers).
	known := map[string]string{
		"user_id": "'" + user.String() + "'::uuid", "since": "'" + snap + "'", "upto": "'" + snap + "'",
		"after_room": "'" + uuid.Nil.String() + "'::uuid", "after_seq": "0", "lim": "101", "max_backlog": "10000",
		"seen_rooms": "'{}'::uuid[]", "seen_seqs": "'{}'::bigint[]",
	}
	args := make([]string, len(names))
	for i, n := range names {
		v, ok := known[n]
		if !ok {
			return fmt.Errorf("SyncEvents has a parameter %q the benchmark does not know; add it to explainSync", n)
		}
		args[i] = v
	}
	execute := "EXECUTE bench_sync(" + strings.Join(args, ", ") + ")"
	if _, err := conn.Exec(ctx, "PREPARE bench_sync AS "+query); err != nil {
		return fmt.Errorf("prepare SyncEvents: %w", err)
	}
	for _, mode := range []string{"force_custom_plan", "auto"} {
		if _, err := conn.Exec(ctx, "SET plan_cache_mode = "+mode); err != nil {
			return err
		}
		for range 6 {
			if _, err := conn.Exec(ctx, execute); err != nil {
				return err
			}
		}
		rows, err := conn.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+execute)
		if err != nil {
			return err
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "\nEXPLAIN (ANALYZE, BUFFERS) SyncEvents, caught up, plan_cache_mode=%s, after 6 executions:\n%s\n\n", mode, strings.Join(lines, "\n"))
	}

	// The rooms with their unread counts, as a fresh sync and GET /v1/rooms list them.
	list, _, err := sqlcQuery(filepath.Join(root, "db", "queries", "rooms.sql"), "ListJoinedRooms")
	if err != nil {
		return err
	}
	list = strings.ReplaceAll(list, "sqlc.embed(r)", "r.*")
	listArgs := []any{user, time.Time{}, uuid.Nil, 201}
	for range 6 {
		if _, err := conn.Exec(ctx, list, listArgs...); err != nil {
			return fmt.Errorf("ListJoinedRooms: %w", err)
		}
	}
	rows, err := conn.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+list, listArgs...)
	if err != nil {
		return err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "\nEXPLAIN (ANALYZE, BUFFERS) ListJoinedRooms, all %d of the reader's rooms:\n%s\n\n", 200, strings.Join(lines, "\n"))
	return nil
}

var (
	sqlcParam  = regexp.MustCompile(`sqlc\.n?arg\(\s*'?(\w+)'?\s*\)|@(\w+)`)
	sqlcHeader = regexp.MustCompile(`(?m)^-- name: (\w+) :\w+\s*$`)
)

// sqlcQuery extracts a named query from an sqlc query file and numbers its parameters
// ($1… in order of first use), returning the SQL and the parameter names.
func sqlcQuery(path, name string) (string, []string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	src := string(b)
	locs := sqlcHeader.FindAllStringSubmatchIndex(src, -1)
	for i, l := range locs {
		if src[l[2]:l[3]] != name {
			continue
		}
		end := len(src)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		var body []string
		for _, line := range strings.Split(src[l[1]:end], "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "--") {
				body = append(body, line)
			}
		}
		var names []string
		index := map[string]int{}
		q := sqlcParam.ReplaceAllStringFunc(strings.TrimSuffix(strings.TrimSpace(strings.Join(body, "\n")), ";"), func(m string) string {
			sm := sqlcParam.FindStringSubmatch(m)
			n := sm[1] + sm[2]
			if _, ok := index[n]; !ok {
				names = append(names, n)
				index[n] = len(names)
			}
			return fmt.Sprintf("$%d", index[n])
		})
		return q, names, nil
	}
	return "", nil, errors.New("no query " + name + " in " + path)
}
