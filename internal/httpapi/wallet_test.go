package httpapi_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/parlortest"
	"github.com/parlor-dev/parlor/internal/wallet"
)

func history(t *testing.T, u *parlortest.User) []apiclient.WalletTransaction {
	t.Helper()
	var all []apiclient.WalletTransaction
	var cursor *string
	for {
		limit := 2
		res, err := u.Client.ListWalletTransactionsWithResponse(ctx, &apiclient.ListWalletTransactionsParams{Limit: &limit, Cursor: cursor})
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode(), string(res.Body))
		all = append(all, res.JSON200.Items...)
		if res.JSON200.NextCursor == nil {
			return all
		}
		cursor = res.JSON200.NextCursor
	}
}

func requireBooksBalance(t *testing.T, s *parlortest.Server) {
	t.Helper()
	problems, err := wallet.Reconcile(ctx, s.Pool)
	require.NoError(t, err)
	require.Empty(t, problems, "the ledger does not reconcile")
}

func tip(t *testing.T, u *parlortest.User, room uuid.UUID, key string, to uuid.UUID, amount int64) *apiclient.SendTipResponse {
	t.Helper()
	res, err := u.Client.SendTipWithResponse(ctx, room, &apiclient.SendTipParams{IdempotencyKey: key},
		apiclient.SendTipJSONRequestBody{RecipientId: to, Amount: amount})
	require.NoError(t, err)
	return res
}

// joinRoom joins room under an Idempotency-Key ("" sends none).
func joinRoom(t *testing.T, u *parlortest.User, room uuid.UUID, key string) *apiclient.JoinRoomResponse {
	t.Helper()
	var params apiclient.JoinRoomParams
	if key != "" {
		params.IdempotencyKey = &key
	}
	res, err := u.Client.JoinRoomWithResponse(ctx, room, &params)
	require.NoError(t, err)
	return res
}

func TestWalletStartsEmptyAndListsPackages(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann := s.Register(t, "ann")
	require.Equal(t, int64(0), parlortest.BalanceOf(t, ann))
	require.Empty(t, history(t, ann))
	res, err := ann.Client.ListCreditPackagesWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode(), string(res.Body))
	require.Equal(t, apiclient.CreditPackage{Id: "small", Credits: 100, Price: 199, Currency: "usd"}, res.JSON200.Items[0])
	require.Len(t, res.JSON200.Items, 3)

	noAuth, err := s.Client.GetWalletWithResponse(ctx)
	require.NoError(t, err)
	parlortest.RequireProblem(t, noAuth.HTTPResponse, noAuth.Body, 401, "unauthorized")
}

func TestPaidRoomEntryChargesOnce(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t) // platform fee 10 %
	ann, bob, carl := s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "carl")
	price := int64(100)
	created, err := ann.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "vip", EntryPrice: &price})
	require.NoError(t, err)
	require.Equal(t, 201, created.StatusCode(), string(created.Body))
	room := created.JSON201.Id
	s.Grant(t, bob, 250)
	s.Grant(t, carl, 99)

	// Without an Idempotency-Key: refused before anything moves, whatever the wallet holds.
	res := joinRoom(t, bob, room, "")
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 400, "idempotency_key_required")
	require.Equal(t, int64(250), parlortest.BalanceOf(t, bob))
	require.Nil(t, rrGetRoom(t, bob, room).Membership)

	// Too few credits: refused, nothing changes.
	res = joinRoom(t, carl, room, uuid.NewString())
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 422, "insufficient_credits")
	require.Equal(t, int64(99), parlortest.BalanceOf(t, carl))
	require.Nil(t, rrGetRoom(t, carl, room).Membership)

	// Concurrent joins by one user, each under its own key (separate clicks on two
	// devices): all answer 200, one debit, one member.joined.
	const n = 20
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Go(func() {
			key := uuid.NewString()
			r, err := bob.Client.JoinRoomWithResponse(ctx, room, &apiclient.JoinRoomParams{IdempotencyKey: &key})
			if err != nil {
				t.Error(err)
				return
			}
			statuses[i] = r.StatusCode()
		})
	}
	wg.Wait()
	for _, st := range statuses {
		require.Equal(t, 200, st)
	}
	require.Equal(t, int64(150), parlortest.BalanceOf(t, bob))
	require.Equal(t, int64(90), parlortest.BalanceOf(t, ann), "the owner gets the price minus the platform fee")
	require.Equal(t, 10, s.Count(t, "SELECT balance::int FROM ledger_accounts WHERE code = 'platform_fees'"))
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM room_events WHERE room_id = $1 AND type = 'member.joined' AND user_id = $2", room, bob.ID))

	// The history says what each change was for.
	h := history(t, bob)
	require.Len(t, h, 2)
	require.Equal(t, apiclient.KindRoomEntry, h[0].Kind)
	require.Equal(t, int64(-100), h[0].Amount)
	require.Equal(t, int64(150), h[0].BalanceAfter)
	require.Equal(t, room, *h[0].RoomId)
	require.Equal(t, ann.ID, *h[0].CounterpartyId)
	require.Equal(t, apiclient.KindAdjustment, h[1].Kind)
	owner := history(t, ann)
	require.Len(t, owner, 1)
	require.Equal(t, int64(90), owner[0].Amount)
	require.Equal(t, bob.ID, *owner[0].CounterpartyId)

	// Entry is paid once per room: leaving and joining again is free.
	leave, err := bob.Client.LeaveRoomWithResponse(ctx, room)
	require.NoError(t, err)
	require.Equal(t, 204, leave.StatusCode())
	require.Equal(t, 200, joinRoom(t, bob, room, uuid.NewString()).StatusCode())
	require.Equal(t, int64(150), parlortest.BalanceOf(t, bob))
	requireBooksBalance(t, s)
}

// TestPaidJoinIdempotencyKey: a paid room's join follows the Idempotency-Key rules of every
// money-moving POST — the same key replays the first answer, and concurrent requests under
// one key run once — while free rooms and current members need no key, and a room the
// caller cannot see stays a 404 rather than revealing that it costs credits.
func TestPaidJoinIdempotencyKey(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob, carl := s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "carl")
	price := int64(40)
	created, err := ann.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "vip", EntryPrice: &price})
	require.NoError(t, err)
	require.Equal(t, 201, created.StatusCode(), string(created.Body))
	room := created.JSON201.Id
	private := apiclient.VisibilityPrivate
	hidden, err := ann.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "hidden", EntryPrice: &price, Visibility: &private})
	require.NoError(t, err)
	require.Equal(t, 201, hidden.StatusCode(), string(hidden.Body))
	free, err := ann.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: "free"})
	require.NoError(t, err)
	require.Equal(t, 201, free.StatusCode(), string(free.Body))
	s.Grant(t, bob, 100)

	// Deny by default comes first: no key, no invitation → 404, not 400.
	res := joinRoom(t, bob, hidden.JSON201.Id, "")
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 404, "not_found")
	// A free room needs no key.
	require.Equal(t, 200, joinRoom(t, carl, free.JSON201.Id, "").StatusCode())

	// Concurrent requests under one key: one runs; the others wait their turn (409 with
	// Retry-After) or replay its answer. One debit either way.
	key := uuid.NewString()
	const n = 10
	var wg sync.WaitGroup
	answers := make([]*apiclient.JoinRoomResponse, n)
	for i := range n {
		wg.Go(func() {
			r, err := bob.Client.JoinRoomWithResponse(ctx, room, &apiclient.JoinRoomParams{IdempotencyKey: &key})
			if err != nil {
				t.Error(err)
				return
			}
			answers[i] = r
		})
	}
	wg.Wait()
	ran := 0
	for _, r := range answers {
		require.NotNil(t, r)
		switch {
		case r.StatusCode() == 409:
			parlortest.RequireProblem(t, r.HTTPResponse, r.Body, 409, "idempotency_key_in_use")
			require.NotEmpty(t, r.HTTPResponse.Header.Get("Retry-After"))
		case r.StatusCode() == 200 && r.HTTPResponse.Header.Get("Idempotent-Replayed") == "":
			ran++
		default:
			require.Equal(t, 200, r.StatusCode(), string(r.Body))
		}
	}
	require.Equal(t, 1, ran, "exactly one request under the key ran")
	require.Equal(t, int64(60), parlortest.BalanceOf(t, bob))

	// A later repeat replays the first answer, byte for byte, and charges nothing.
	replay := joinRoom(t, bob, room, key)
	require.Equal(t, 200, replay.StatusCode(), string(replay.Body))
	require.Equal(t, "true", replay.HTTPResponse.Header.Get("Idempotent-Replayed"))
	again := joinRoom(t, bob, room, key)
	require.Equal(t, replay.Body, again.Body)
	// The same key on another room's join is a different request.
	reused := joinRoom(t, bob, free.JSON201.Id, key)
	parlortest.RequireProblem(t, reused.HTTPResponse, reused.Body, 422, "idempotency_key_reused")
	// A current member joining again needs no key and pays nothing.
	require.Equal(t, 200, joinRoom(t, bob, room, "").StatusCode())
	require.Equal(t, int64(60), parlortest.BalanceOf(t, bob))
	requireBooksBalance(t, s)
}

func TestTipsUnderConcurrencyNeverOverdraw(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	cfg.TipRate = config.Rate{N: 1000, Window: time.Minute}
	s := parlortest.Start(t, cfg)
	ann, bob, carl := s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "carl")
	room := parlortest.CreateRoom(t, ann, "tips", apiclient.VisibilityPublic).Id
	require.Equal(t, 200, joinRoom(t, bob, room, "").StatusCode())
	require.Equal(t, 200, joinRoom(t, carl, room, "").StatusCode())
	start, err := carl.Client.SyncWithResponse(ctx, &apiclient.SyncParams{})
	require.NoError(t, err)
	s.Grant(t, bob, 50)

	// 100 concurrent tips of 5 from a wallet holding 10 tips' worth.
	const n = 100
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Go(func() {
			res, err := bob.Client.SendTipWithResponse(ctx, room, &apiclient.SendTipParams{IdempotencyKey: fmt.Sprintf("tip-%d", i)},
				apiclient.SendTipJSONRequestBody{RecipientId: carl.ID, Amount: 5})
			if err != nil {
				t.Error(err)
				return
			}
			if res.StatusCode() == 422 {
				parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 422, "insufficient_credits")
			}
			statuses[i] = res.StatusCode()
		})
	}
	wg.Wait()
	count := map[int]int{}
	for _, st := range statuses {
		count[st]++
	}
	require.Equal(t, map[int]int{201: 10, 422: 90}, count)
	require.Equal(t, int64(0), parlortest.BalanceOf(t, bob))
	require.Equal(t, int64(50), parlortest.BalanceOf(t, carl))
	requireBooksBalance(t, s)

	// The recipient sees exactly the ten tips in the room, through sync.
	var tips []apiclient.RoomTip
	since := start.JSON200.NextToken
	for {
		page, err := carl.Client.SyncWithResponse(ctx, &apiclient.SyncParams{Since: &since})
		require.NoError(t, err)
		require.Equal(t, 200, page.StatusCode(), string(page.Body))
		for _, e := range page.JSON200.Events {
			if e.Type == apiclient.Tip {
				require.NotNil(t, e.Tip, "a tip event carries its tip")
				require.Equal(t, carl.ID, *e.UserId)
				require.Equal(t, e.Seq, e.Tip.Seq)
				tips = append(tips, *e.Tip)
			}
		}
		since = page.JSON200.NextToken
		if !page.JSON200.HasMore {
			break
		}
	}
	require.Len(t, tips, 10)
	for _, tp := range tips {
		require.Equal(t, bob.ID, tp.SenderId)
		require.Equal(t, int64(5), tp.Amount)
	}
	require.Len(t, history(t, carl), 10)
}

func TestTipRules(t *testing.T) {
	t.Parallel()
	cfg := parlortest.Config(t)
	cfg.TipMax = 1000
	cfg.TipRate = config.Rate{N: 3, Window: time.Minute}
	s := parlortest.Start(t, cfg)
	ann, bob, eve, zed := s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "eve"), s.Register(t, "zed")
	room := parlortest.CreateRoom(t, ann, "rules", apiclient.VisibilityPublic).Id
	require.Equal(t, 200, joinRoom(t, bob, room, "").StatusCode())
	require.Equal(t, 200, joinRoom(t, zed, room, "").StatusCode())
	for _, u := range []*parlortest.User{ann, bob, eve, zed} {
		s.Grant(t, u, 5000)
	}
	before := s.RoomState(t, room)
	path := "/v1/rooms/" + room.String() + "/tips"
	raw := func(u *parlortest.User, key string, body string) (*http.Response, []byte) {
		h := http.Header{"Authorization": {"Bearer " + u.AccessToken}}
		if key != "" {
			h.Set("Idempotency-Key", key)
		}
		return s.Do(t, "POST", path, "application/json", strings.NewReader(body), h)
	}
	for _, tc := range []struct {
		name   string
		as     *parlortest.User
		key    string
		body   string
		status int
		code   string
	}{
		{"to yourself", bob, "k1", parlortest.JSON(map[string]any{"recipient_id": bob.ID, "amount": 5}), 400, "invalid_request"},
		{"zero credits", bob, "k2", parlortest.JSON(map[string]any{"recipient_id": ann.ID, "amount": 0}), 400, "invalid_request"},
		{"above the limit", bob, "k3", parlortest.JSON(map[string]any{"recipient_id": ann.ID, "amount": 1001}), 400, "invalid_request"},
		{"a long message", bob, "k4", parlortest.JSON(map[string]any{"recipient_id": ann.ID, "amount": 5, "message": strings.Repeat("x", 281)}), 400, "invalid_request"},
		{"an unknown field", bob, "k5", parlortest.JSON(map[string]any{"recipient_id": ann.ID, "amount": 5, "sender_id": ann.ID}), 400, "invalid_request"},
		{"no Idempotency-Key", bob, "", parlortest.JSON(map[string]any{"recipient_id": ann.ID, "amount": 5}), 400, "idempotency_key_required"},
		{"an over-long Idempotency-Key", bob, strings.Repeat("k", 256), parlortest.JSON(map[string]any{"recipient_id": ann.ID, "amount": 5}), 400, "invalid_request"},
		{"to a non-member", bob, "k6", parlortest.JSON(map[string]any{"recipient_id": eve.ID, "amount": 5}), 404, "not_found"},
		{"from a non-member", eve, "k7", parlortest.JSON(map[string]any{"recipient_id": ann.ID, "amount": 5}), 404, "not_found"},
		{"more than the wallet holds", bob, "k8", parlortest.JSON(map[string]any{"recipient_id": ann.ID, "amount": 1000, "message": "x"}), 201, ""},
	} {
		res, b := raw(tc.as, tc.key, tc.body)
		if tc.status == 201 {
			require.Equal(t, 201, res.StatusCode, string(b))
			continue
		}
		parlortest.RequireProblem(t, res, b, tc.status, tc.code)
		require.Equal(t, before, s.RoomState(t, room), "%s changed the room", tc.name)
	}
	require.Equal(t, int64(4000), parlortest.BalanceOf(t, bob))
	require.Equal(t, int64(5000), parlortest.BalanceOf(t, eve))

	// Three tips a minute per sender; the fourth waits.
	for i := range 3 {
		require.Equal(t, 201, tip(t, zed, room, "z"+strconv.Itoa(i), ann.ID, 1).StatusCode())
	}
	res := tip(t, zed, room, "z3", ann.ID, 1)
	parlortest.RequireProblem(t, res.HTTPResponse, res.Body, 429, "rate_limited")
	require.Positive(t, rrRetryAfter(t, res.HTTPResponse))
	require.Equal(t, int64(4997), parlortest.BalanceOf(t, zed))
	requireBooksBalance(t, s)
}

func TestTipIdempotencyKey(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob, carl := s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "carl")
	room := parlortest.CreateRoom(t, ann, "keys", apiclient.VisibilityPublic).Id
	other := parlortest.CreateRoom(t, ann, "other", apiclient.VisibilityPublic).Id
	for _, r := range []uuid.UUID{room, other} {
		require.Equal(t, 200, joinRoom(t, bob, r, "").StatusCode())
		require.Equal(t, 200, joinRoom(t, carl, r, "").StatusCode())
	}
	s.Grant(t, bob, 100)
	s.Grant(t, carl, 100)

	// A repeat replays the first response and moves nothing.
	first := tip(t, bob, room, "key-1", carl.ID, 7)
	require.Equal(t, 201, first.StatusCode(), string(first.Body))
	again := tip(t, bob, room, "key-1", carl.ID, 7)
	require.Equal(t, 201, again.StatusCode())
	require.JSONEq(t, string(first.Body), string(again.Body))
	require.Equal(t, "true", again.HTTPResponse.Header.Get("Idempotent-Replayed"))
	require.Empty(t, first.HTTPResponse.Header.Get("Idempotent-Replayed"))
	// So does the same body written differently.
	res, b := s.Do(t, "POST", "/v1/rooms/"+room.String()+"/tips", "application/json",
		strings.NewReader(`{ "amount": 7,  "recipient_id": "`+carl.ID.String()+`" }`),
		http.Header{"Authorization": {"Bearer " + bob.AccessToken}, "Idempotency-Key": {"key-1"}})
	require.Equal(t, 201, res.StatusCode, string(b))
	require.JSONEq(t, string(first.Body), string(b))
	require.Equal(t, int64(93), parlortest.BalanceOf(t, bob))
	require.Equal(t, 1, s.Count(t, "SELECT count(*) FROM room_events WHERE room_id = $1 AND type = 'tip'", room))

	// The same key for a different request: 422, nothing moves.
	for _, r := range []*apiclient.SendTipResponse{tip(t, bob, room, "key-1", carl.ID, 8), tip(t, bob, other, "key-1", carl.ID, 7), tip(t, bob, room, "key-1", ann.ID, 7)} {
		parlortest.RequireProblem(t, r.HTTPResponse, r.Body, 422, "idempotency_key_reused")
	}
	require.Equal(t, int64(93), parlortest.BalanceOf(t, bob))

	// Keys belong to their user: carl's "key-1" is a tip of its own.
	mine := tip(t, carl, room, "key-1", bob.ID, 7)
	require.Equal(t, 201, mine.StatusCode(), string(mine.Body))
	require.NotEqual(t, first.JSON201.Id, mine.JSON201.Id)
	require.Equal(t, int64(100), parlortest.BalanceOf(t, bob))

	// A problem is an answer too: replayed, even once the wallet could pay.
	broke := tip(t, bob, room, "key-2", carl.ID, 1000)
	parlortest.RequireProblem(t, broke.HTTPResponse, broke.Body, 422, "insufficient_credits")
	s.Grant(t, bob, 1000)
	broke = tip(t, bob, room, "key-2", carl.ID, 1000)
	parlortest.RequireProblem(t, broke.HTTPResponse, broke.Body, 422, "insufficient_credits")
	require.Equal(t, "true", broke.HTTPResponse.Header.Get("Idempotent-Replayed"))

	// While the first request is still running, a repeat gets 409 with Retry-After. Holding
	// the room's row lock keeps the first tip waiting inside its transaction.
	lock, err := s.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = lock.Rollback(ctx) }()
	_, err = lock.Exec(ctx, "SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE", room)
	require.NoError(t, err)
	done := make(chan *apiclient.SendTipResponse)
	go func() {
		res, err := bob.Client.SendTipWithResponse(ctx, room, &apiclient.SendTipParams{IdempotencyKey: "key-3"},
			apiclient.SendTipJSONRequestBody{RecipientId: carl.ID, Amount: 3})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	require.Eventually(t, func() bool {
		return s.Count(t, "SELECT count(*) FROM idempotency_keys WHERE key = 'key-3' AND status IS NULL") == 1
	}, 5*time.Second, 10*time.Millisecond)
	busy := tip(t, bob, room, "key-3", carl.ID, 3)
	parlortest.RequireProblem(t, busy.HTTPResponse, busy.Body, 409, "idempotency_key_in_use")
	require.Positive(t, rrRetryAfter(t, busy.HTTPResponse))
	require.NoError(t, lock.Rollback(ctx))
	firstOf3 := <-done
	require.NotNil(t, firstOf3)
	require.Equal(t, 201, firstOf3.StatusCode(), string(firstOf3.Body))
	replay := tip(t, bob, room, "key-3", carl.ID, 3)
	require.Equal(t, 201, replay.StatusCode())
	require.Equal(t, firstOf3.JSON201.Id, replay.JSON201.Id)
	require.Equal(t, int64(1097), parlortest.BalanceOf(t, bob))
	requireBooksBalance(t, s)
}

// TestTipReachesMembersLive: a tip is a room event, so members see it on their sockets.
func TestTipReachesMembersLive(t *testing.T) {
	t.Parallel()
	s := parlortest.New(t)
	ann, bob, carl := s.Register(t, "ann"), s.Register(t, "bob"), s.Register(t, "carl")
	room := parlortest.CreateRoom(t, ann, "live tips", apiclient.VisibilityPublic).Id
	require.Equal(t, 200, joinRoom(t, bob, room, "").StatusCode())
	require.Equal(t, 200, joinRoom(t, carl, room, "").StatusCode())
	s.Grant(t, bob, 10)
	ws := s.Connect(t, ann, "")
	ws.Next("hello", 5*time.Second)

	res, err := bob.Client.SendTipWithResponse(ctx, room, &apiclient.SendTipParams{IdempotencyKey: "live"},
		apiclient.SendTipJSONRequestBody{RecipientId: carl.ID, Amount: 7, Message: rrPtr("great talk")})
	require.NoError(t, err)
	require.Equal(t, 201, res.StatusCode(), string(res.Body))
	f := ws.Events(1, 5*time.Second)[0]
	require.Equal(t, apiclient.Tip, f.Event.Type)
	require.NotNil(t, f.Event.Tip)
	require.Equal(t, apiclient.RoomTip{Id: res.JSON201.Id, RoomId: room, SenderId: bob.ID, RecipientId: carl.ID,
		Amount: 7, Message: "great talk", Seq: res.JSON201.Seq, CreatedAt: f.Event.Tip.CreatedAt}, *f.Event.Tip)
	require.WithinDuration(t, res.JSON201.CreatedAt, f.Event.Tip.CreatedAt, time.Millisecond)
}
