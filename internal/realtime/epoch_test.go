package realtime_test

// A sync token is bound to the database's identity and timeline. A token minted before a
// failover to a replica (a new timeline) or before a restore into another database cluster
// (another system identifier) names transactions of another history: it is refused with the
// documented "start over" answer (GET /v1/sync → 410 full_sync_required; the WebSocket
// upgrades, then closes at once with 4400), and a fresh GET /v1/sync works as usual.
//
// Each test runs PostgreSQL servers of its own (pgtest.StartCluster) under its Parlor
// instances.

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/postgres/pgtest"
)

func TestATokenFromBeforeAFailoverIsRefused(t *testing.T) {
	t.Parallel()
	began := time.Now()
	primary := pgtest.StartCluster(t)
	primary.CreateDatabase(t, "parlor")
	cfg := epConfig(t, primary.URL("parlor"))
	a := parlortest.Start(t, cfg)
	ann := a.Register(t, "ann")
	room := createRoom(t, ann, "before the failover")
	first := send(t, ann.Client, room, "replicated")

	// Tokens minted before the failover, both ways: by GET /v1/sync and by the socket.
	fromSync := epSync(t, ann.Client, "").NextToken
	ws := a.Connect(t, ann, "")
	ws.Next("hello", 5*time.Second)
	second := send(t, ann.Client, room, "also replicated")
	fromSocket := ws.Events(1, 5*time.Second)[0].Token
	require.NoError(t, ws.Conn.Close())
	// Both resume here, on the primary that minted them.
	require.Equal(t, []uuid.UUID{second.Id}, epMessageIDs(epSync(t, ann.Client, fromSync).Events))
	require.Empty(t, epSync(t, ann.Client, fromSocket).Events)

	// Fail over: a streaming standby replays everything, the primary dies, the standby is
	// promoted (a new timeline), and a Parlor starts on it.
	standby := primary.StartStandby(t)
	standby.WaitReplayed(t, primary)
	// The old instance's job queue stops first: against a dead database River's Stop takes
	// ~7 s, which would only slow this test down (the instance itself plays no further part).
	require.NoError(t, a.Queue.Stop(ctx))
	primary.Stop(t)
	standby.Promote(t)
	cfgB := cfg
	cfgB.DBURL = standby.URL("parlor")
	cfgB.RedisKeyPrefix = "parlortest:" + uuid.NewString() + ":"
	b := parlortest.Start(t, cfgB)
	annB := epOn(b, ann) // users and sessions were replicated

	for _, old := range []struct{ name, token string }{{"a GET /v1/sync token", fromSync}, {"a socket event token", fromSocket}} {
		epRequireFullSyncRequired(t, annB, old.token, old.name+" minted before the failover")
		epRequireSocketClosed4400(t, b, annB, old.token, old.name+" minted before the failover")
	}

	// Starting over works, and everything committed before the failover is there.
	fresh := epSync(t, annB.Client, "")
	require.NotNil(t, fresh.Rooms)
	require.True(t, slices.ContainsFunc(*fresh.Rooms, func(r apiclient.Room) bool { return r.Id == room }),
		"the room is still there after the failover")
	msgs, err := annB.Client.ListMessagesWithResponse(ctx, room, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, msgs.StatusCode(), string(msgs.Body))
	var ids []uuid.UUID
	for _, m := range msgs.JSON200.Items {
		ids = append(ids, m.Id)
	}
	require.ElementsMatch(t, []uuid.UUID{first.Id, second.Id}, ids, "the messages are still there after the failover")

	// The fresh token resumes normally: on a socket, then with GET /v1/sync.
	epRequireResumes(t, b, annB, room, fresh.NextToken)
	t.Logf("took %s", time.Since(began).Round(time.Millisecond))
}

func TestATokenFromAnotherDatabaseClusterIsRefused(t *testing.T) {
	t.Parallel()
	began := time.Now()
	clusterA, clusterB := pgtest.StartCluster(t), pgtest.StartCluster(t)
	clusterA.CreateDatabase(t, "parlor")
	cfg := epConfig(t, clusterA.URL("parlor"))
	a := parlortest.Start(t, cfg)
	ann := a.Register(t, "ann")
	room := createRoom(t, ann, "before the restore")
	send(t, ann.Client, room, "backed up")

	fromSync := epSync(t, ann.Client, "").NextToken
	ws := a.Connect(t, ann, "")
	ws.Next("hello", 5*time.Second)
	send(t, ann.Client, room, "also backed up")
	fromSocket := ws.Events(1, 5*time.Second)[0].Token
	require.NoError(t, ws.Conn.Close())
	require.Len(t, epSync(t, ann.Client, fromSync).Events, 1, "the token resumes on the cluster that minted it")

	// A backup of A restored into B: the same rows — users, sessions, rooms, and the cursor
	// secret that signs tokens, so the old tokens' signatures are valid on B — in a cluster with
	// another system identifier. Only the database's identity tells the token is not B's.
	clusterA.CopyDatabase(t, "parlor", clusterB)
	secretA, systemA := epIdentity(t, clusterA.URL("parlor"))
	secretB, systemB := epIdentity(t, clusterB.URL("parlor"))
	require.Equal(t, secretA, secretB, "B must sign tokens with A's secret, or the test passes for the wrong reason")
	require.NotEqual(t, systemA, systemB)

	cfgB := cfg
	cfgB.DBURL = clusterB.URL("parlor")
	cfgB.RedisKeyPrefix = "parlortest:" + uuid.NewString() + ":"
	b := parlortest.Start(t, cfgB)
	annB := epOn(b, ann)

	for _, old := range []struct{ name, token string }{{"a GET /v1/sync token", fromSync}, {"a socket event token", fromSocket}} {
		epRequireFullSyncRequired(t, annB, old.token, old.name+" minted on another cluster")
		epRequireSocketClosed4400(t, b, annB, old.token, old.name+" minted on another cluster")
	}

	fresh := epSync(t, annB.Client, "")
	require.NotNil(t, fresh.Rooms)
	require.True(t, slices.ContainsFunc(*fresh.Rooms, func(r apiclient.Room) bool { return r.Id == room }))
	epRequireResumes(t, b, annB, room, fresh.NextToken)
	t.Logf("took %s", time.Since(began).Round(time.Millisecond))
}

// epConfig is the test configuration on a database of a private cluster, migrated on start.
func epConfig(t *testing.T, dbURL string) config.Config {
	t.Helper()
	cfg := parlortest.Config(t)
	migrate := true
	cfg.DBURL = dbURL
	cfg.DBMigrateOnStart = &migrate
	return cfg
}

// epOn is u calling the API of s (the same session, found in s's database).
func epOn(s *parlortest.Server, u *parlortest.User) *parlortest.User {
	on := *u
	on.Client = s.NewClient(parlortest.Bearer(u.AccessToken))
	return &on
}

// epSync calls GET /v1/sync (with since unless empty) and requires a page.
func epSync(t *testing.T, c *apiclient.ClientWithResponses, since string) *apiclient.SyncPage {
	t.Helper()
	params := &apiclient.SyncParams{}
	if since != "" {
		params.Since = &since
	}
	res, err := c.SyncWithResponse(ctx, params)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode(), "GET /v1/sync (since %q): %s", since, res.Body)
	return res.JSON200
}

func epMessageIDs(events []apiclient.RoomEvent) []uuid.UUID {
	var ids []uuid.UUID
	for _, e := range events {
		if e.Type == apiclient.MessageCreated && e.Message != nil {
			ids = append(ids, e.Message.Id)
		}
	}
	return ids
}

// epRequireFullSyncRequired: GET /v1/sync?since=token answers the documented 410
// full_sync_required problem (the contract-checking client also fails the test when 410 is not
// a documented answer of GET /v1/sync).
func epRequireFullSyncRequired(t *testing.T, u *parlortest.User, token, what string) {
	t.Helper()
	res, err := u.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &token})
	require.NoError(t, err)
	require.Equal(t, http.StatusGone, res.StatusCode(),
		"GET /v1/sync with %s must answer 410 full_sync_required (start over); got: %s", what, res.Body)
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, http.StatusGone, "full_sync_required")
}

// epRequireSocketClosed4400: GET /v1/realtime?ticket=…&since=token upgrades, then closes at
// once with 4400 — no frame before the close.
func epRequireSocketClosed4400(t *testing.T, s *parlortest.Server, u *parlortest.User, token, what string) {
	t.Helper()
	gwRequireDocumentedClose(t, 4400)
	conn, res, err := s.Dial(url.Values{"ticket": {s.Ticket(t, u)}, "since": {token}}, nil)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("the WebSocket handshake with %s was refused (status %d: %v); the rule is: upgrade, then close 4400", what, status, err)
	}
	defer conn.Close()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	var frames []string
	for {
		_, data, err := conn.ReadMessage()
		if err == nil {
			frames = append(frames, string(data))
			continue
		}
		var ce *websocket.CloseError
		var ne net.Error
		switch {
		case errors.As(err, &ce):
			require.Equal(t, 4400, ce.Code, "the socket with %s closed with %d %q, want 4400 (start over); frames before: %q", what, ce.Code, ce.Text, frames)
			require.Empty(t, frames, "the socket with %s must close at once, before any frame", what)
			return
		case errors.As(err, &ne) && ne.Timeout():
			t.Fatalf("the socket with %s was not closed within 5 s (want close 4400 at once); it sent: %q", what, frames)
		default:
			t.Fatalf("the socket with %s ended without a close frame: %v; frames before: %q", what, err, frames)
		}
	}
}

// epRequireResumes: a socket opened with token goes live (a new message arrives on it), and
// GET /v1/sync with token returns that message.
func epRequireResumes(t *testing.T, s *parlortest.Server, u *parlortest.User, room uuid.UUID, token string) {
	t.Helper()
	ws := s.Connect(t, u, token)
	ws.Next("hello", 5*time.Second)
	m := send(t, u.Client, room, "after starting over")
	f := ws.Events(1, 5*time.Second)[0]
	require.Equal(t, m.Id, f.Event.Message.Id)
	require.NotEmpty(t, f.Token)
	require.Equal(t, []uuid.UUID{m.Id}, epMessageIDs(epSync(t, u.Client, token).Events))
	require.Empty(t, epSync(t, u.Client, f.Token).Events)
}

// epIdentity returns a database's cursor secret and its cluster's system identifier.
func epIdentity(t *testing.T, dbURL string) (secret []byte, system string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	require.NoError(t, conn.QueryRow(ctx, "SELECT secret FROM server_secrets WHERE name = 'cursor'").Scan(&secret))
	require.NoError(t, conn.QueryRow(ctx, "SELECT system_identifier::text FROM pg_control_system()").Scan(&system))
	return secret, system
}
