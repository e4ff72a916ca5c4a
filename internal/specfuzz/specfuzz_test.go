package specfuzz_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	parlor "github.com/parlor-dev/parlor"
	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/gen/apiclient"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/auth"
	"github.com/parlor-dev/parlor/internal/config"
	"github.com/parlor-dev/parlor/internal/parlortest"
)

var (
	seedFlag  = flag.Uint64("specfuzz.seed", 12, "seed of the spec fuzzer's generator (math/rand/v2 PCG); the default is what CI runs")
	traceFlag = flag.Bool("specfuzz.trace", false, "log every request the spec fuzzer sends, with its answer's status")
)

const (
	// validPerOperation is how many random valid requests each operation gets, besides the
	// ones at the lower and upper bounds of every schema.
	validPerOperation = 4
	// maxInvalidPerOperation bounds the invalid requests of one operation (the widest
	// request body yields about 60), so the suite stays well under a minute.
	maxInvalidPerOperation = 80
	// bodyLimit is the contract's "Request bodies over 64 KiB are refused with 413".
	bodyLimit = 64 << 10
)

// skipped are the operations of the contract the suite does not send requests to, and why.
// (gen/api's embedded spec leaves them out too: neither is served by the strict server.)
var skipped = map[string]string{
	"connectRealtime": "a WebSocket upgrade: what follows is frames, not HTTP answers; the realtime tests cover its refusals",
	"stripeWebhook": "its raw body is verified against the Stripe-Signature HMAC before anything else, so generated " +
		"bodies only ever reach the signature check, which is tested where it lives (internal/payments) and by the webhook tests of internal/httpapi",
}

// late operations run after all the others, in this order: they change the small world the
// other operations' ids point at (a muted, kicked or banned bob, a deleted message, an
// archived or deleted room), and the others should see it whole.
var late = []string{"updateMember", "deleteMessage", "kickMember", "banMember", "unbanMember", "leaveRoom", "updateRoom", "deleteRoom"}

// validCap bounds the valid values of a parameter below its schema's maximum: a sync with
// timeout_ms waits that long when nothing happens, and 30 s per request would not fit.
var validCap = map[string]int64{"timeout_ms": 20}

// problemCodes is the closed set of problem codes. The contract's Problem schema lists the
// codes only in its description (`code` is a plain string, not an enum), so the set checked
// is apperr's, the one the problem renderer draws from; the test also fails when the
// contract's list and this one drift apart.
var problemCodes = []apperr.Code{
	apperr.Invalid, apperr.Unauthorized, apperr.InvalidCredentials, apperr.RefreshTokenReused,
	apperr.Forbidden, apperr.NotFound, apperr.Conflict, apperr.InsufficientCredits,
	apperr.IdempotencyRequired, apperr.IdempotencyMismatch, apperr.IdempotencyInFlight,
	apperr.RoomLimit, apperr.TopupLimit, apperr.FullSyncRequired, apperr.Banned, apperr.Muted, apperr.Archived,
	apperr.PayloadTooLarge, apperr.UnsupportedAPIVersion, apperr.UnsupportedMediaType, apperr.MethodNotAllowed,
	apperr.RateLimited, apperr.NotReady, apperr.Unavailable, apperr.Internal,
}

// finding is a bug this suite found that is not fixed yet. A failure it explains names it;
// it stays a failure until the bug is fixed (then delete the finding).
type finding struct {
	id, what string
	explains func(op operation, c fuzzCase, status int) bool
}

var findings = []finding{
	// F1–F4 (header limit, trailing JSON, explicit null, uuid format) are fixed.
}

// TestEveryOperationAnswersGeneratedRequestsWithinTheContract sends every operation of the
// contract requests generated from its schemas and checks each answer: no 5xx, a documented
// status with headers and body matching the contract, a problem with a documented code for
// every 4xx, a 4xx for every request that breaks a schema, 401 for a valid request without
// valid credentials, 413 for a body over 64 KiB, 405 for a method a path lacks, and 404 for
// an id that does not exist (or the 400 or 403 the request earns first).
func TestEveryOperationAnswersGeneratedRequestsWithinTheContract(t *testing.T) {
	t.Parallel()
	started := time.Now()
	seed := *seedFlag
	t.Logf("specfuzz: seed %d (rerun with -specfuzz.seed=%d)", seed, seed)
	fmt.Printf("specfuzz: seed %d (rerun with -specfuzz.seed=%d)\n", seed, seed)

	spec, err := api.GetSpec()
	require.NoError(t, err)
	codes := requireCodesMatchTheContract(t, spec)

	cfg := parlortest.Config(t)
	lots := config.Rate{N: 1_000_000, Window: time.Minute}
	cfg.RateSync, cfg.RateRead, cfg.RateWrite, cfg.RatePublic = lots, lots, lots, lots
	cfg.LoginRateIP, cfg.LoginRateIPEmail, cfg.RegisterRateIP = lots, lots, lots
	cfg.TipRate = lots
	// The admin is an account the operator names in the config before starting (refunds).
	adminID := insertUser(t, cfg.DBURL, "admin-specfuzz@example.com")
	cfg.AdminUserIDs = []uuid.UUID{adminID}

	// Every response the server gives goes through parlortest's contract-checking transport;
	// the recorder lets each mismatch it reports be pinned on the request that caused it.
	rec := &contractRecorder{TB: t}
	s := parlortest.Start(rec, cfg)
	requireTransportChecksEveryStatus(t, s, rec)

	w := newWorld(t, s, cfg, adminID)
	f := &fuzzer{
		t: t, s: s, rec: rec, w: w, codes: codes,
		client: s.HTTPClient(),
		gen:    &generator{rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), w: w},
		stats:  map[string]*opStats{},
		fails:  map[string]int{},
		found:  map[string]int{},
	}
	f.client.Timeout = 15 * time.Second

	// The embedded spec is oapi-codegen's rendering of the contract: it capitalizes
	// operationIds and leaves out the operations excluded from code generation (the WebSocket
	// upgrade and the webhook, served outside the strict server). The contract as written is
	// embedded too (package parlor); it names the operations and lists them all.
	contract, err := openapi3.NewLoader().LoadFromData(parlor.OpenAPIYAML)
	require.NoError(t, err, "load api/openapi.yaml")
	ops := operationsOf(t, spec, contract)
	for _, op := range ops {
		cases := f.gen.cases(op)
		st := f.statsOf(op.id, op.method+" "+op.path)
		st.cases = len(cases)
		for _, c := range cases {
			for _, cred := range f.credentials(op, c) {
				f.send(op, c, cred, st)
			}
		}
	}
	f.undeclaredMethods(contract)
	f.report(ops, time.Since(started))
}

// contractRecorder is the testing.TB the server under test reports to. While a fuzz request
// is on its way it collects the contract mismatches parlortest's transport reports, so the
// failure names the generated case; at any other time it passes them straight through.
type contractRecorder struct {
	testing.TB
	mu        sync.Mutex
	capturing bool
	caught    []string
}

func (r *contractRecorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.capturing {
		r.caught = append(r.caught, fmt.Sprintf(format, args...))
		return
	}
	r.TB.Helper()
	r.TB.Errorf(format, args...)
}

// capture starts collecting; the returned func stops and returns what was collected.
func (r *contractRecorder) capture() func() []string {
	r.mu.Lock()
	r.capturing, r.caught = true, nil
	r.mu.Unlock()
	return func() []string {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.capturing = false
		return r.caught
	}
}

// requireTransportChecksEveryStatus proves that parlortest's transport checks 4xx answers
// as strictly as 2xx ones: canned answers that break the contract, sent through it from a
// stand-in server on the contract's paths, must each be reported, and a conforming one not.
func requireTransportChecksEveryStatus(t *testing.T, s *parlortest.Server, rec *contractRecorder) {
	t.Helper()
	problem := `{"type":"about:blank","title":"Not Found","status":404,"code":"not_found"}`
	room := "/v1/rooms/" + uuid.NewString() // GET declares 404; /v1/me does not
	canned := map[string]struct {
		status      int
		contentType string
		header      http.Header
		body        string
		flagged     bool
	}{
		room + "?case=problem-without-code": {404, "application/problem+json", nil, `{"type":"about:blank","title":"Not Found","status":404}`, true},
		"/v1/me?case=undeclared-status":     {418, "application/problem+json", nil, problem, true},
		"/v1/rooms?case=not-a-problem":      {400, "text/plain", nil, "bad request", true},
		"/v1/wallet?case=bad-retry-after":   {429, "application/problem+json", http.Header{"Retry-After": {"soon"}}, problem, true},
		"/v1/me?case=user-without-id":       {200, "application/json", nil, `{"email":"a@example.com","display_name":"A","created_at":"2024-01-01T00:00:00Z"}`, true},
		room + "?case=conforming-404":       {404, "application/problem+json", nil, problem, false},
	}
	standIn := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		a := canned[r.URL.Path+"?"+r.URL.RawQuery]
		for k, v := range a.header {
			rw.Header()[k] = v
		}
		rw.Header().Set("Content-Type", a.contentType)
		rw.WriteHeader(a.status)
		_, _ = io.WriteString(rw, a.body)
	}))
	defer standIn.Close()
	client := s.HTTPClient()
	for target, a := range canned {
		done := rec.capture()
		res, err := client.Get(standIn.URL + target)
		caught := done()
		require.NoError(t, err)
		_ = res.Body.Close()
		if a.flagged {
			require.NotEmpty(t, caught, "parlortest's transport let %s (%d) through", target, a.status)
		} else {
			require.Empty(t, caught, "parlortest's transport flagged the conforming %s", target)
		}
	}
}

// requireCodesMatchTheContract returns the closed set of problem codes, after checking that
// the list in the contract's Problem description is exactly apperr's.
func requireCodesMatchTheContract(t *testing.T, spec *openapi3.T) map[string]bool {
	t.Helper()
	p := spec.Components.Schemas["Problem"]
	require.NotNil(t, p, "the contract has no Problem schema")
	_, list, ok := strings.Cut(p.Value.Description, "Codes:")
	require.True(t, ok, "the Problem schema's description no longer lists the codes")
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(list, -1) {
		documented[m[1]] = true
	}
	codes := map[string]bool{}
	for _, c := range problemCodes {
		codes[string(c)] = true
		if !documented[string(c)] {
			t.Errorf("problem code %q (internal/apperr) is not in the contract's Problem description", c)
		}
	}
	for c := range documented {
		if !codes[c] {
			t.Errorf("problem code %q of the contract's Problem description is not in internal/apperr's closed set", c)
		}
	}
	return codes
}

func insertUser(t *testing.T, dbURL, email string) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var id uuid.UUID
	require.NoError(t, conn.QueryRow(ctx,
		`INSERT INTO users (email, password_hash, display_name) VALUES ($1, 'x', 'Admin') RETURNING id`, email).Scan(&id))
	return id
}

// credential is what a request sends in its Authorization header.
type credential struct {
	name   string
	header string // "" sends none
	valid  bool
	// primary is the operation's main caller (the owner of the world, the admin for admin
	// operations); another valid caller may be refused with 403 where the primary is not.
	primary bool
}

// world is what the generated requests can point at: two users with 100 credits each; a
// public, a private and a paid room of the first with a message each (and one of the second
// in the public room, which he joined); a pending and a paid top-up of the first; and
// sessions of their own for the operations that end one (logout, a reused refresh token).
type world struct {
	ann, bob      credential
	admin, logout credential
	garbage       []credential
	ids           map[string][]string // by kind: room, message, user, topup
	emails        []string
	passwords     []string
	refreshTokens []string
}

func newWorld(t *testing.T, s *parlortest.Server, cfg config.Config, adminID uuid.UUID) *world {
	t.Helper()
	ctx := context.Background()
	ann, bob := s.Register(t, "ann"), s.Register(t, "bob")
	carl, dora := s.Register(t, "carl"), s.Register(t, "dora")

	room := func(name string, v apiclient.Visibility, price int64) uuid.UUID {
		res, err := ann.Client.CreateRoomWithResponse(ctx, apiclient.CreateRoomJSONRequestBody{Name: name, Visibility: &v, EntryPrice: &price})
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, res.StatusCode(), string(res.Body))
		return res.JSON201.Id
	}
	message := func(room uuid.UUID, body string) uuid.UUID {
		res, err := ann.Client.SendMessageWithResponse(ctx, room, apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: body})
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, res.StatusCode(), string(res.Body))
		return res.JSON201.Id
	}
	public, private := room("fuzz public", apiclient.VisibilityPublic, 0), room("fuzz private", apiclient.VisibilityPrivate, 0)
	paid := room("fuzz paid", apiclient.VisibilityPublic, 10)
	m1, m2, m4 := message(public, "hello"), message(private, "secret"), message(paid, "worth it")
	join, err := bob.Client.JoinRoomWithResponse(ctx, public, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, join.StatusCode(), string(join.Body))
	bobs, err := bob.Client.SendMessageWithResponse(ctx, public, apiclient.SendMessageJSONRequestBody{ClientMsgId: uuid.New(), Body: "hi"})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, bobs.StatusCode(), string(bobs.Body))
	topup := func(u *parlortest.User) apiclient.Topup {
		res, err := u.Client.CreateTopupWithResponse(ctx, &apiclient.CreateTopupParams{IdempotencyKey: uuid.NewString()},
			apiclient.CreateTopupJSONRequestBody{PackageId: "small"})
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, res.StatusCode(), string(res.Body))
		return *res.JSON201
	}
	// Credits for both, so that tips, paid entry and refunds can succeed: the sandbox's
	// checkout page pays, and reading the top-up settles it.
	paidTopup := func(u *parlortest.User) apiclient.Topup {
		tp := topup(u)
		page, err := url.Parse(tp.CheckoutUrl)
		require.NoError(t, err)
		res, body := s.Do(t, http.MethodPost, page.Path+"/pay", "", nil, nil)
		require.Equal(t, http.StatusOK, res.StatusCode, string(body))
		got, err := u.Client.GetTopupWithResponse(ctx, tp.Id)
		require.NoError(t, err)
		require.Equal(t, apiclient.TopupStatusSucceeded, got.JSON200.Status, string(got.Body))
		return *got.JSON200
	}
	pending, bought := topup(ann), paidTopup(ann)
	paidTopup(bob)

	tokens := auth.NewAccessTokens(s.Keys, cfg.PublicURL, 15*time.Minute)
	adminToken, err := tokens.Issue(adminID, uuid.New())
	require.NoError(t, err)
	expired, err := auth.NewAccessTokens(s.Keys, cfg.PublicURL, -time.Minute).Issue(ann.ID, uuid.New())
	require.NoError(t, err)

	bearer := func(name, token string) credential {
		return credential{name: name, header: "Bearer " + token, valid: true}
	}
	return &world{
		ann: bearer("ann", ann.AccessToken), bob: bearer("bob", bob.AccessToken),
		admin: bearer("admin", adminToken), logout: bearer("dora", dora.AccessToken),
		garbage: []credential{
			{name: "garbage token", header: "Bearer not-a-token"},
			{name: "tampered token", header: "Bearer " + tamperedSignature(ann.AccessToken)},
			{name: "expired token", header: "Bearer " + expired},
			{name: "alg none token", header: "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0."},
			{name: "Basic scheme", header: "Basic " + base64.StdEncoding.EncodeToString([]byte(ann.Email+":"+ann.Password))},
			{name: "empty bearer", header: "Bearer"},
		},
		// Rooms and messages pair up by index (a scene): each message is in the room beside it.
		ids: map[string][]string{
			"room":    {public.String(), private.String(), public.String(), paid.String()},
			"message": {m1.String(), m2.String(), bobs.JSON201.Id.String(), m4.String()},
			"user":    {bob.ID.String(), ann.ID.String()},
			"topup":   {pending.Id.String(), bought.Id.String()},
		},
		emails:        []string{ann.Email, bob.Email},
		passwords:     []string{ann.Password, bob.Password},
		refreshTokens: []string{carl.RefreshToken},
	}
}

// tamperedSignature changes one character in the middle of a JWT's signature: every bit of
// it counts there (unlike a segment's last character, whose low bits may be padding).
func tamperedSignature(token string) string {
	b := []byte(token)
	dot := bytes.LastIndexByte(b, '.')
	i := dot + (len(b)-dot)/2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// operation is one operation of the contract, with what the generator needs of it.
type operation struct {
	id, method, path string
	tags             []string
	params           []*openapi3.Parameter
	body             *openapi3.Schema // its application/json request body, if any
	bodyOptional     bool             // the request body may be left out (requestBody.required: false)
	secured          bool
}

// operationsOf lists the operations to fuzz: those of the embedded spec (what the server's
// request validator and parlortest's transport enforce), named by the contract's
// operationIds. It fails when an operation of the contract is neither fuzzed nor skipped on
// purpose, so that "every operation" stays true as the contract grows.
func operationsOf(t *testing.T, spec, contract *openapi3.T) []operation {
	t.Helper()
	contractIDs := map[string]string{}
	for path, item := range contract.Paths.Map() {
		for method, o := range item.Operations() {
			contractIDs[method+" "+path] = o.OperationID
		}
	}
	var ops []operation
	walked := map[string]bool{}
	for path, item := range spec.Paths.Map() {
		for method, o := range item.Operations() {
			id, ok := contractIDs[method+" "+path]
			if !ok {
				t.Errorf("%s %s (%s) is in gen/api's embedded spec but not in api/openapi.yaml: run go tool task generate", method, path, o.OperationID)
				continue
			}
			if _, skip := skipped[id]; skip {
				continue
			}
			walked[id] = true
			op := operation{id: id, method: method, path: path, tags: o.Tags}
			byKey := map[string]*openapi3.Parameter{}
			var order []string
			for _, refs := range []openapi3.Parameters{item.Parameters, o.Parameters} {
				for _, p := range refs {
					key := p.Value.In + ":" + p.Value.Name
					if _, seen := byKey[key]; !seen {
						order = append(order, key)
					}
					byKey[key] = p.Value // the operation's own overrides the path's
				}
			}
			for _, k := range order {
				op.params = append(op.params, byKey[k])
			}
			if o.RequestBody != nil {
				if mt := o.RequestBody.Value.Content.Get("application/json"); mt != nil && mt.Schema != nil {
					op.body = mt.Schema.Value
					op.bodyOptional = !o.RequestBody.Value.Required
				}
			}
			security := spec.Security
			if o.Security != nil {
				security = *o.Security
			}
			for _, req := range security {
				if len(req) > 0 {
					op.secured = true
				}
			}
			ops = append(ops, op)
		}
	}
	for key, id := range contractIDs {
		if _, skip := skipped[id]; !skip && !walked[id] {
			t.Errorf("%s (%s) of api/openapi.yaml is neither fuzzed nor skipped: is gen/api up to date?", key, id)
		}
	}
	rank := func(op operation) int { return slices.Index(late, op.id) + 1 }
	sort.Slice(ops, func(i, j int) bool {
		if ri, rj := rank(ops[i]), rank(ops[j]); ri != rj {
			return ri < rj
		}
		if ops[i].path != ops[j].path {
			return ops[i].path < ops[j].path
		}
		return ops[i].method < ops[j].method
	})
	require.NotEmpty(t, ops)
	return ops
}

// caseKind says what the contract lets a generated request get.
type caseKind int

const (
	// validCase conforms to the contract: 2xx, or a documented 4xx (a 404, a 409, a 422…).
	validCase caseKind = iota
	// unknownIDCase conforms, but names an id nothing has: 404 (or a 400 or 403 earned first).
	unknownIDCase
	// invalidCase breaks a rule of a schema (or the server's no-NUL rule): a 4xx, never 2xx.
	invalidCase
	// oddCase is unusual without breaking a rule the contract states: anything but a 5xx.
	oddCase
)

// fuzzCase is one generated request.
type fuzzCase struct {
	name        string
	kind        caseKind
	want        int // the status it must get with valid credentials; 0: any its kind allows
	path        map[string]string
	query       url.Values
	header      http.Header
	body        []byte
	hasBody     bool
	contentType string
	chunked     bool
	value       any // the decoded body, for deriving cases from it
}

func (c fuzzCase) clone(name string, kind caseKind) fuzzCase {
	n := c
	n.name, n.kind, n.want = name, kind, 0
	n.path = map[string]string{}
	for k, v := range c.path {
		n.path[k] = v
	}
	n.query = url.Values{}
	for k, v := range c.query {
		n.query[k] = slices.Clone(v)
	}
	n.header = c.header.Clone()
	n.body = slices.Clone(c.body)
	n.value = deepCopy(c.value)
	return n
}

type edge int

const (
	randomEdge edge = iota
	minEdge         // required fields only, every bound at its lowest
	maxEdge         // every optional field, every bound at its highest
	wideEdge        // as maxEdge, with strings of 4-byte characters
)

// generator makes requests from schemas, drawing every choice from one seeded source.
type generator struct {
	rng *rand.Rand
	w   *world
	// scene is the room (and its message) the request being generated is about, so that
	// the ids of one request belong together.
	scene int
}

// cases generates an operation's requests: valid ones, then invalid ones derived from each
// parameter and the body, one broken rule at a time.
func (g *generator) cases(op operation) []fuzzCase {
	var out []fuzzCase
	base := g.request(op, randomEdge, "valid")
	out = append(out, g.request(op, minEdge, "valid: lowest bounds"), g.request(op, maxEdge, "valid: highest bounds"))
	if op.body != nil || hasStringParams(op) {
		out = append(out, g.request(op, wideEdge, "valid: longest strings of 4-byte characters"))
	}
	out = append(out, base)
	for i := 1; i < validPerOperation; i++ {
		out = append(out, g.request(op, randomEdge, fmt.Sprintf("valid #%d", i+1)))
	}

	var invalid []fuzzCase
	for _, p := range op.params {
		invalid = append(invalid, g.paramCases(base, p)...)
	}
	if op.body != nil {
		invalid = append(invalid, g.bodyCases(base, op.body, op.bodyOptional)...)
	} else if op.method != http.MethodGet {
		c := base.clone("unexpected JSON body", oddCase)
		c.body, c.hasBody, c.contentType = []byte(`{"fuzz":1}`), true, "application/json"
		invalid = append(invalid, c)
	}
	if len(invalid) > maxInvalidPerOperation {
		g.rng.Shuffle(len(invalid), func(i, j int) { invalid[i], invalid[j] = invalid[j], invalid[i] })
		invalid = invalid[:maxInvalidPerOperation]
	}
	out = append(out, invalid...)
	// Each case is a request of its own: a header it carries from the base (an
	// Idempotency-Key) gets a new value, or the server would rightly answer it as a reuse.
	for i := range out {
		for _, p := range op.params {
			where := p.In + "." + p.Name + ":"
			if p.In == "header" && out[i].header.Get(p.Name) != "" && !strings.HasPrefix(out[i].name, where) {
				out[i].header.Set(p.Name, scalar(g.value(p.Name, p.Schema.Value, randomEdge)))
			}
		}
	}
	return out
}

func hasStringParams(op operation) bool {
	for _, p := range op.params {
		if s := p.Schema.Value; s.Type.Is("string") && s.Format == "" && len(s.Enum) == 0 {
			return true
		}
	}
	return false
}

// request generates a request that conforms to every schema of the operation.
func (g *generator) request(op operation, e edge, name string) fuzzCase {
	c := fuzzCase{name: name, kind: validCase, path: map[string]string{}, query: url.Values{}, header: http.Header{}}
	g.scene = g.rng.IntN(len(g.w.ids["room"]))
	for _, p := range op.params {
		include := p.Required || e == maxEdge || e == wideEdge || (e == randomEdge && g.rng.IntN(2) == 0)
		if !include {
			continue
		}
		v := scalar(g.value(p.Name, p.Schema.Value, e))
		switch p.In {
		case "path":
			c.path[p.Name] = v
		case "query":
			c.query.Set(p.Name, v)
		case "header":
			c.header.Set(p.Name, v)
		}
	}
	if op.body != nil {
		c.value = g.value("", op.body, e)
		c.body, c.hasBody, c.contentType = mustJSON(c.value), true, "application/json"
	}
	return c
}

func scalar(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	default:
		return fmt.Sprint(v)
	}
}

// value generates a value the schema accepts.
func (g *generator) value(name string, s *openapi3.Schema, e edge) any {
	if len(s.Enum) > 0 {
		switch e {
		case minEdge:
			return s.Enum[0]
		case maxEdge, wideEdge:
			return s.Enum[len(s.Enum)-1]
		}
		return s.Enum[g.rng.IntN(len(s.Enum))]
	}
	switch {
	case s.Type.Is("string"):
		return g.str(name, s, e)
	case s.Type.Is("integer"):
		return json.Number(strconv.FormatInt(g.integer(name, s, e), 10))
	case s.Type.Is("number"):
		return float64(g.integer(name, s, e))
	case s.Type.Is("boolean"):
		switch e {
		case minEdge:
			return false
		case maxEdge, wideEdge:
			return true
		}
		return g.rng.IntN(2) == 0
	case s.Type.Is("array"):
		n := g.between(int(s.MinItems), int(s.MinItems)+3, s.MaxItems, e)
		items := make([]any, n)
		for i := range items {
			items[i] = g.value(name, s.Items.Value, e)
		}
		return items
	case s.Type.Is("object"):
		return g.object(s, e)
	}
	return map[string]any{} // a schema without a type (none in request bodies today)
}

// between picks a length in [lo, hi], hi lowered to max when set; minEdge takes lo and
// maxEdge max (or hi without one).
func (g *generator) between(lo, hi int, max *uint64, e edge) int {
	if max != nil {
		hi = min(hi, int(*max))
	}
	switch e {
	case minEdge:
		return lo
	case maxEdge, wideEdge:
		if max != nil {
			return int(*max)
		}
		return hi
	}
	return lo + g.rng.IntN(hi-lo+1)
}

func (g *generator) object(s *openapi3.Schema, e edge) map[string]any {
	out := map[string]any{}
	required := map[string]bool{}
	for _, r := range s.Required {
		required[r] = true
	}
	names := sortedKeys(s.Properties)
	for _, n := range names {
		if required[n] || e == maxEdge || e == wideEdge || (e == randomEdge && g.rng.IntN(2) == 0) {
			out[n] = g.value(n, s.Properties[n].Value, e)
		}
	}
	for _, n := range names {
		if uint64(len(out)) >= s.MinProps {
			break
		}
		if _, ok := out[n]; !ok {
			out[n] = g.value(n, s.Properties[n].Value, e)
		}
	}
	return out
}

func (g *generator) integer(name string, s *openapi3.Schema, e edge) int64 {
	floor, ceil := int64(math.MinInt32), int64(math.MaxInt32)
	if s.Format == "int64" {
		floor, ceil = math.MinInt64, math.MaxInt64
	}
	lo, hi := floor, ceil
	if s.Min != nil {
		lo = int64(*s.Min)
		if s.ExclusiveMin.IsTrue() {
			lo++
		}
	}
	if s.Max != nil {
		hi = int64(*s.Max)
		if s.ExclusiveMax.IsTrue() {
			hi--
		}
	}
	if c, ok := validCap[name]; ok {
		hi = min(hi, c)
	}
	switch e {
	case minEdge:
		return lo
	case maxEdge, wideEdge:
		return hi
	}
	if s.Min == nil {
		lo = max(lo, -1000)
	}
	span := uint64(hi - lo)
	if hi-lo < 0 || span > 1000 {
		span = 1000
	}
	return lo + int64(g.rng.Uint64N(span+1))
}

const visibleASCII = "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"

// textRunes is what generated text is made of: ASCII, 2-, 3- and 4-byte characters, and a
// space (trimmed fields must survive it).
var textRunes = []rune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.,!éßж中😀👍")

func (g *generator) str(name string, s *openapi3.Schema, e edge) string {
	n := g.between(int(s.MinLength), int(s.MinLength)+24, s.MaxLength, e)
	if s.MaxLength == nil && (e == maxEdge || e == wideEdge) {
		n = int(s.MinLength) + 200
	}
	switch s.Format {
	case "uuid":
		return g.id(name)
	case "date-time":
		switch e {
		case minEdge:
			return "0001-01-01T00:00:00Z"
		case maxEdge, wideEdge:
			return "9999-12-31T23:59:59Z"
		}
		return time.Now().UTC().Add(time.Duration(g.rng.IntN(60*24*60)-30*24*60) * time.Minute).Format(time.RFC3339)
	case "email":
		return g.email(n, e)
	}
	if e == randomEdge {
		switch name {
		case "email":
			return g.email(n, e)
		case "password":
			if g.rng.IntN(3) == 0 {
				return g.w.passwords[g.rng.IntN(len(g.w.passwords))]
			}
		case "refresh_token":
			if g.rng.IntN(2) == 0 {
				return g.w.refreshTokens[g.rng.IntN(len(g.w.refreshTokens))]
			}
		case "package_id":
			if g.rng.IntN(4) > 0 {
				return []string{"small", "medium", "large"}[g.rng.IntN(3)]
			}
		}
	}
	if s.Pattern != "" {
		return g.ascii(n)
	}
	if e == wideEdge {
		return strings.Repeat("😀", n)
	}
	return g.text(n)
}

func (g *generator) text(n int) string {
	r := make([]rune, n)
	for i := range r {
		r[i] = textRunes[g.rng.IntN(len(textRunes))]
	}
	return string(r)
}

func (g *generator) ascii(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = visibleASCII[g.rng.IntN(len(visibleASCII))]
	}
	return string(b)
}

// email returns an address: on random draws an existing user's or a new one, at the edges
// one exactly n characters long.
func (g *generator) email(n int, e edge) string {
	if e == randomEdge {
		if g.rng.IntN(3) == 0 {
			return g.w.emails[g.rng.IntN(len(g.w.emails))]
		}
		return fmt.Sprintf("fuzz-%08x@example.com", g.rng.Uint32())
	}
	const domain = "@x.io"
	if n <= len(domain) {
		return strings.Repeat("a", n)
	}
	return strings.Repeat("a", n-len(domain)) + domain
}

// id returns, mostly, an id of the world of the kind the name suggests, else a new one.
// Rooms and messages are of the request's scene; users are mostly bob (whom ann, the
// owner, may moderate), else ann.
func (g *generator) id(name string) string {
	kind := idKind(name)
	pool := g.w.ids[kind]
	if len(pool) == 0 || g.rng.IntN(100) < 15 {
		return g.uuid()
	}
	switch kind {
	case "room", "message":
		return pool[g.scene%len(pool)]
	case "user":
		if g.rng.IntN(10) < 7 {
			return pool[0]
		}
	}
	return pool[g.rng.IntN(len(pool))]
}

func idKind(name string) string {
	switch {
	case strings.Contains(name, "room"):
		return "room"
	case strings.Contains(name, "message"), strings.Contains(name, "reply"):
		return "message"
	case strings.Contains(name, "user"), strings.Contains(name, "recipient"):
		return "user"
	case strings.Contains(name, "topup"):
		return "topup"
	}
	return ""
}

func (g *generator) uuid() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(g.rng.UintN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return uuid.UUID(b).String()
}

// broken is a value that breaks one rule of a schema.
type broken struct {
	label string
	value any
	kind  caseKind
}

// breaks returns values that each break one rule of s (for a JSON body).
func (g *generator) breaks(s *openapi3.Schema) []broken {
	var out []broken
	add := func(label string, v any) { out = append(out, broken{label, v, invalidCase}) }
	if !s.Nullable {
		add("null", nil)
	}
	switch {
	case s.Type.Is("string"):
		add("wrong type (number)", json.Number("12345"))
		add("wrong type (boolean)", true)
		if s.MaxLength != nil {
			add(fmt.Sprintf("over maxLength (%d)", *s.MaxLength+1), g.text(int(*s.MaxLength)+1))
		}
		if s.MinLength > 0 {
			add(fmt.Sprintf("under minLength (%d)", s.MinLength-1), g.text(int(s.MinLength)-1))
		}
		if len(s.Enum) > 0 {
			add("not in the enum", "fuzz-not-a-value")
			if v, ok := s.Enum[0].(string); ok && strings.ToUpper(v) != v {
				add("enum value in upper case", strings.ToUpper(v))
			}
		}
		switch s.Format {
		case "uuid":
			add("malformed uuid", "not-a-uuid")
			add("uuid in braces", "{"+g.uuid()+"}")
			add("uuid without hyphens", strings.ReplaceAll(g.uuid(), "-", ""))
		case "date-time":
			add("malformed date-time", "yesterday")
			add("date-time on February 30", "2025-02-30T10:00:00Z")
			add("date-time without zone", "2025-01-02T10:00:00")
		case "":
			if len(s.Enum) == 0 {
				add("NUL character", nulString(s))
				out = append(out, broken{"invalid UTF-8", json.RawMessage("\"a\xff\xfeb\""), oddCase})
				if s.MinLength > 0 {
					out = append(out, broken{"whitespace only", strings.Repeat(" ", max(int(s.MinLength), 3)), oddCase})
				}
			}
		}
		if s.Pattern != "" {
			add("against the pattern", "has spaces")
		}
	case s.Type.Is("integer"):
		add("wrong type (string)", "12")
		add("fraction", 1.5)
		if s.Min != nil {
			add(fmt.Sprintf("below minimum (%d)", int64(*s.Min)-1), json.Number(strconv.FormatInt(int64(*s.Min)-1, 10)))
		}
		if s.Max != nil {
			add(fmt.Sprintf("above maximum (%d)", int64(*s.Max)+1), json.Number(strconv.FormatInt(int64(*s.Max)+1, 10)))
		}
		add("int64 overflow", json.Number("9223372036854775808"))
		add("number out of float64 range", json.Number("1e400"))
	case s.Type.Is("boolean"):
		add("wrong type (string)", "true")
		add("wrong type (number)", json.Number("1"))
	case s.Type.Is("array"):
		add("wrong type (object)", map[string]any{})
		if s.MaxItems != nil {
			items := make([]any, *s.MaxItems+1)
			for i := range items {
				items[i] = g.value("", s.Items.Value, randomEdge)
			}
			add("over maxItems", items)
		}
		if s.MinItems > 0 {
			add("under minItems", []any{})
		}
	case s.Type.Is("object"):
		add("wrong type (string)", "x")
		add("wrong type (array)", []any{})
	}
	return out
}

// nulString is a string within s's length bounds with a NUL character inside.
func nulString(s *openapi3.Schema) string {
	v := "a\x00b"
	if n := int(s.MinLength); n > len(v) {
		v += strings.Repeat("c", n-len(v))
	}
	return v
}

// paramCases derives invalid (and unknown-id) requests from one parameter.
func (g *generator) paramCases(base fuzzCase, p *openapi3.Parameter) []fuzzCase {
	s := p.Schema.Value
	where := p.In + "." + p.Name
	var out []fuzzCase
	set := func(label string, kind caseKind, v *string) {
		c := base.clone(where+": "+label, kind)
		switch p.In {
		case "path":
			c.path[p.Name] = *v
		case "query":
			if v == nil {
				c.query.Del(p.Name)
			} else {
				c.query.Set(p.Name, *v)
			}
		case "header":
			if v == nil {
				c.header.Del(p.Name)
			} else {
				c.header.Set(p.Name, *v)
			}
		}
		out = append(out, c)
	}
	str := func(v string) *string { return &v }
	if p.Required && p.In != "path" {
		set("missing", invalidCase, nil)
	}
	switch {
	case s.Type.Is("string") && s.Format == "uuid":
		set("unknown id", unknownIDCase, str(g.uuid()))
		set("malformed uuid", invalidCase, str("not-a-uuid"))
		set("truncated uuid", invalidCase, str(g.uuid()[:35]))
		if real := base.path[p.Name]; p.In == "path" && real != "" {
			set("uuid in braces", invalidCase, str("{"+real+"}"))
			set("uuid without hyphens", invalidCase, str(strings.ReplaceAll(real, "-", "")))
		}
		set("NUL character", invalidCase, str(g.uuid()[:35]+"\x00"))
	case s.Type.Is("string"):
		if len(s.Enum) > 0 {
			set("not in the enum", invalidCase, str("fuzz-not-a-value"))
		}
		if s.MaxLength != nil {
			v := g.ascii(int(*s.MaxLength) + 1)
			if s.Pattern == "" {
				v = g.text(int(*s.MaxLength) + 1)
			}
			set(fmt.Sprintf("over maxLength (%d)", *s.MaxLength+1), invalidCase, &v)
		}
		if s.MinLength > 0 {
			set(fmt.Sprintf("under minLength (%d)", s.MinLength-1), invalidCase, str(g.ascii(int(s.MinLength)-1)))
		}
		if s.Pattern != "" {
			set("against the pattern (space)", invalidCase, str("has spaces"))
			set("against the pattern (non-ASCII)", invalidCase, str("ключ"))
		}
		if p.In != "header" && len(s.Enum) == 0 { // net/http refuses to send a NUL in a header
			set("NUL character", invalidCase, str(nulString(s)))
		}
	case s.Type.Is("integer"):
		set("not a number", invalidCase, str("abc"))
		set("fraction", invalidCase, str("1.5"))
		set("int64 overflow", invalidCase, str("99999999999999999999"))
		if s.Min != nil {
			set(fmt.Sprintf("below minimum (%d)", int64(*s.Min)-1), invalidCase, str(strconv.FormatInt(int64(*s.Min)-1, 10)))
		}
		if s.Max != nil {
			set(fmt.Sprintf("above maximum (%d)", int64(*s.Max)+1), invalidCase, str(strconv.FormatInt(int64(*s.Max)+1, 10)))
		}
		set("empty", oddCase, str(""))
	case s.Type.Is("boolean"):
		set("not a boolean", invalidCase, str("maybe"))
	}
	if p.In == "query" {
		c := base.clone(where+": given twice", oddCase)
		c.query[p.Name] = []string{scalar(g.value(p.Name, s, randomEdge)), scalar(g.value(p.Name, s, randomEdge))}
		out = append(out, c)
	}
	return out
}

// bodyCases derives invalid requests from the body schema: each rule of each field broken,
// then bodies that are not the JSON object asked for at all. An empty body is valid where
// the body is optional.
func (g *generator) bodyCases(base fuzzCase, s *openapi3.Schema, optional bool) []fuzzCase {
	var out []fuzzCase
	withValue := func(label string, kind caseKind, v any) {
		c := base.clone(label, kind)
		c.value = v
		c.body = mustJSON(v)
		out = append(out, c)
	}
	var walk func(path []string, s *openapi3.Schema)
	walk = func(path []string, s *openapi3.Schema) {
		where := "body"
		if len(path) > 0 {
			where += "." + strings.Join(path, ".")
		}
		for _, b := range g.breaks(s) {
			if len(path) == 0 && b.value == nil {
				continue // a null body is below
			}
			withValue(where+": "+b.label, b.kind, setAt(deepCopy(base.value), path, b.value))
		}
		if !s.Type.Is("object") {
			return
		}
		for _, r := range s.Required {
			withValue(where+"."+r+": missing", invalidCase, deleteAt(deepCopy(base.value), append(slices.Clone(path), r)))
		}
		if ap := s.AdditionalProperties; ap.Has != nil && !*ap.Has {
			withValue(where+": unknown property", invalidCase, setAt(deepCopy(base.value), append(slices.Clone(path), "fuzz_unknown"), "x"))
		}
		if s.MinProps > 0 {
			withValue(fmt.Sprintf("%s: under minProperties (%d)", where, s.MinProps), invalidCase, setAt(deepCopy(base.value), path, map[string]any{}))
		}
		for _, name := range sortedKeys(s.Properties) {
			walk(append(slices.Clone(path), name), s.Properties[name].Value)
		}
	}
	walk(nil, s)

	raw := func(label string, kind caseKind, body []byte, edit func(*fuzzCase)) {
		c := base.clone(label, kind)
		c.value, c.body = nil, body
		if edit != nil {
			edit(&c)
		}
		out = append(out, c)
	}
	oversized := mustJSON(map[string]any{"fuzz": strings.Repeat("a", bodyLimit+1024)})
	raw("body: not JSON", invalidCase, []byte(`{"oops`), nil)
	if optional {
		raw("body: empty (optional)", validCase, nil, nil)
	} else {
		raw("body: empty", invalidCase, nil, nil)
	}
	raw("body: JSON array", invalidCase, []byte(`[]`), nil)
	raw("body: null", invalidCase, []byte(`null`), nil)
	if name := firstStringProperty(s); name != "" && bytes.HasSuffix(base.body, []byte("}")) {
		twice := append(slices.Clone(base.body[:len(base.body)-1]), []byte(`,"`+name+`":12345}`)...)
		raw("body."+name+": given twice, the second time a number", invalidCase, twice, nil)
	}
	raw("body: a second JSON value after the object", invalidCase, append(slices.Clone(base.body), []byte(` {}`)...), nil)
	raw("body: nested 10,001 deep", invalidCase, []byte(strings.Repeat("[", 10001)+strings.Repeat("]", 10001)), nil)
	raw("body: Content-Type text/plain", invalidCase, base.body, func(c *fuzzCase) { c.contentType = "text/plain" })
	raw("body: no Content-Type", invalidCase, base.body, func(c *fuzzCase) { c.contentType = "" })
	raw("body: Content-Type with charset", validCase, base.body, func(c *fuzzCase) { c.contentType = "application/json; charset=utf-8" })
	raw("body: oversized (> 64 KiB)", invalidCase, oversized, func(c *fuzzCase) { c.want = http.StatusRequestEntityTooLarge })
	raw("body: oversized (> 64 KiB), chunked", invalidCase, oversized, func(c *fuzzCase) {
		c.chunked, c.want = true, http.StatusRequestEntityTooLarge
	})
	return out
}

// firstStringProperty names the first (by name) plain string property of an object schema.
func firstStringProperty(s *openapi3.Schema) string {
	for _, name := range sortedKeys(s.Properties) {
		if p := s.Properties[name].Value; p.Type.Is("string") && p.Format == "" && len(p.Enum) == 0 {
			return name
		}
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = deepCopy(x)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, x := range v {
			s[i] = deepCopy(x)
		}
		return s
	}
	return v
}

// setAt sets the value at path inside root (creating objects on the way) and returns root.
func setAt(root any, path []string, v any) any {
	if len(path) == 0 {
		return v
	}
	m, ok := root.(map[string]any)
	if !ok {
		m = map[string]any{}
	}
	m[path[0]] = setAt(m[path[0]], path[1:], v)
	return m
}

func deleteAt(root any, path []string) any {
	m, ok := root.(map[string]any)
	if !ok {
		return root
	}
	if len(path) == 1 {
		delete(m, path[0])
		return m
	}
	m[path[0]] = deleteAt(m[path[0]], path[1:])
	return m
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("specfuzz: encode %#v: %v", v, err))
	}
	return b
}

// fuzzer sends the generated requests and checks the answers.
type fuzzer struct {
	t      *testing.T
	s      *parlortest.Server
	rec    *contractRecorder
	w      *world
	gen    *generator
	codes  map[string]bool
	client *http.Client
	stats  map[string]*opStats
	order  []string
	fails  map[string]int // by operation and check, to report each kind a few times only
	found  map[string]int // failures explained by each finding
}

type opStats struct {
	id, route                      string
	cases, sent                    int
	s2xx, s3xx, s4xx, s5xx, broken int // broken: answers outside the contract
	failed                         int
}

func (f *fuzzer) statsOf(id, route string) *opStats {
	st, ok := f.stats[id]
	if !ok {
		st = &opStats{id: id, route: route}
		f.stats[id] = st
		f.order = append(f.order, id)
	}
	return st
}

// credentials are the Authorization headers a case is sent with: valid ones, none, and a
// garbage one (for an operation without security, none and a garbage one).
func (f *fuzzer) credentials(op operation, c fuzzCase) []credential {
	garbage := f.w.garbage[f.gen.rng.IntN(len(f.w.garbage))]
	none := credential{name: "no token"}
	if !op.secured {
		return []credential{none, garbage}
	}
	caller := f.w.ann
	switch {
	case op.id == "logout":
		caller = f.w.logout // a session of its own: logging it out ends no one else's
	case slices.Contains(op.tags, "admin"):
		caller = f.w.admin
	}
	caller.primary = true
	creds := []credential{caller, none, garbage}
	if op.id != "logout" && (c.kind == validCase || c.kind == unknownIDCase) {
		creds = append(creds, f.w.bob) // a second user: not the owner, not an admin
	}
	return creds
}

func expandPath(template string, params map[string]string) string {
	return regexp.MustCompile(`\{([^}]+)\}`).ReplaceAllStringFunc(template, func(m string) string {
		return url.PathEscape(params[m[1:len(m)-1]])
	})
}

// send sends one case with one credential and checks the answer.
func (f *fuzzer) send(op operation, c fuzzCase, cred credential, st *opStats) {
	target := expandPath(op.path, c.path)
	if q := c.query.Encode(); q != "" {
		target += "?" + q
	}
	var body io.Reader
	if c.hasBody {
		body = bytes.NewReader(c.body)
		if c.chunked {
			body = io.MultiReader(body) // no length known: sent chunked
		}
	}
	req, err := http.NewRequest(op.method, f.s.URL+target, body)
	require.NoError(f.t, err)
	for k, v := range c.header {
		req.Header[k] = v
	}
	if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	}
	if cred.header != "" {
		req.Header.Set("Authorization", cred.header)
	}
	st.sent++
	done := f.rec.capture()
	res, err := f.client.Do(req)
	var resBody []byte
	if err == nil {
		resBody, err = io.ReadAll(res.Body)
		_ = res.Body.Close()
	}
	offContract := done()
	if *traceFlag && res != nil {
		f.t.Logf("%s %s %s [case %q, %s] → %d %s", op.id, op.method, target, c.name, cred.name, res.StatusCode, problemCode(resBody))
	}
	fail := func(check, format string, args ...any) {
		st.failed++
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		key := op.id + "|" + check
		known := ""
		for _, fd := range findings {
			if fd.explains(op, c, status) {
				key += " (" + fd.id + ")"
				known = "\nknown finding " + fd.id + ": " + fd.what
				f.found[fd.id]++
				break
			}
		}
		f.fails[key]++
		if f.fails[key] > 3 {
			return
		}
		f.t.Errorf("%s %s [case %q, %s]: %s%s\nrequest body: %s\nresponse %d: %s",
			op.method, shortened(target, 300), c.name, cred.name, fmt.Sprintf(format, args...), known,
			clip(c.body, 400), status, clip(resBody, 800))
	}
	if err != nil {
		fail("transport", "no answer: %v", err)
		return
	}
	switch {
	case res.StatusCode >= 500:
		st.s5xx++
		fail("5xx", "a 5xx (%d) answer", res.StatusCode)
	case res.StatusCode >= 400:
		st.s4xx++
	case res.StatusCode >= 300:
		st.s3xx++
	default:
		st.s2xx++
	}
	if len(offContract) > 0 {
		st.broken++
		fail("contract", "the answer breaks the contract: %s", strings.Join(offContract, "; "))
	}
	if res.Header.Get("X-Request-Id") == "" {
		fail("request id", "no X-Request-Id header")
	}
	if res.StatusCode >= 400 && res.StatusCode < 500 {
		f.checkProblem(res, resBody, fail)
	}

	authorized := cred.valid || !op.secured
	is4xx := res.StatusCode >= 400 && res.StatusCode < 500
	switch {
	case authorized && c.want != 0:
		if res.StatusCode != c.want {
			fail("want", "status %d, want %d", res.StatusCode, c.want)
		}
	case authorized && c.kind == invalidCase:
		if !is4xx {
			fail("invalid accepted", "a request that breaks the contract's schema got %d, want a 4xx", res.StatusCode)
		}
	case authorized && c.kind == unknownIDCase:
		// 404; or 400 when another input of the request is refused first (a ban that ends in
		// the past, a reaction with a space), or 403 for a caller who may not do this at all.
		if ok := res.StatusCode == http.StatusNotFound || res.StatusCode == http.StatusBadRequest ||
			(res.StatusCode == http.StatusForbidden && !cred.primary); !ok {
			fail("unknown id", "an id nothing has got %d, want 404", res.StatusCode)
		}
	case !authorized && (c.kind == validCase || c.kind == unknownIDCase):
		if res.StatusCode != http.StatusUnauthorized || problemCode(resBody) != string(apperr.Unauthorized) {
			fail("unauthenticated", "a request without valid credentials got %d %s, want 401 unauthorized", res.StatusCode, problemCode(resBody))
		}
	case !authorized:
		if !is4xx {
			fail("unauthenticated", "a request without valid credentials got %d, want a 4xx", res.StatusCode)
		}
	}
}

// checkProblem checks a 4xx answer: an application/problem+json problem whose status is the
// HTTP status, whose code is of the closed set and whose request_id is the X-Request-Id.
func (f *fuzzer) checkProblem(res *http.Response, body []byte, fail func(check, format string, args ...any)) {
	mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if mt != "application/problem+json" {
		fail("problem", "a %d with Content-Type %q, want application/problem+json", res.StatusCode, res.Header.Get("Content-Type"))
		return
	}
	var p struct {
		Status    *int    `json:"status"`
		Code      *string `json:"code"`
		RequestID *string `json:"request_id"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		fail("problem", "the problem is not JSON: %v", err)
		return
	}
	if p.Status == nil || *p.Status != res.StatusCode {
		fail("problem", "problem status %v, want the HTTP status %d", deref(p.Status), res.StatusCode)
	}
	if p.Code == nil || !f.codes[*p.Code] {
		fail("problem code", "problem code %q is not one the contract documents", deref(p.Code))
	}
	if p.RequestID == nil || *p.RequestID != res.Header.Get("X-Request-Id") {
		fail("problem", "problem request_id %q, want the X-Request-Id %q", deref(p.RequestID), res.Header.Get("X-Request-Id"))
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func problemCode(body []byte) string {
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(body, &p)
	return p.Code
}

// shortened is s, cut after n bytes (a 64 KiB query string would drown the message).
func shortened(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("… (%d bytes)", len(s))
}

func clip(b []byte, n int) string {
	if len(b) <= n {
		return strconv.Quote(string(b))
	}
	return strconv.Quote(string(b[:n])) + fmt.Sprintf("… (%d bytes)", len(b))
}

// undeclaredMethods sends each path of the contract a method it does not declare: the answer
// is a 405 problem (echo's router), never a 5xx.
func (f *fuzzer) undeclaredMethods(contract *openapi3.T) {
	st := f.statsOf("(undeclared method)", "each path, a method it lacks")
	for _, path := range sortedKeys(contract.Paths.Map()) {
		item := contract.Paths.Value(path)
		var ids []string
		for _, o := range item.Operations() {
			ids = append(ids, o.OperationID)
		}
		if len(ids) == 0 || slices.ContainsFunc(ids, func(id string) bool { _, skip := skipped[id]; return skip }) {
			continue
		}
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if item.GetOperation(m) != nil {
				continue
			}
			params := map[string]string{}
			for _, p := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(path, -1) {
				params[p[1]] = f.gen.uuid()
			}
			op := operation{id: st.id, method: m, path: path, secured: true}
			c := fuzzCase{name: "undeclared method", kind: invalidCase, want: http.StatusMethodNotAllowed, path: params, query: url.Values{}, header: http.Header{}}
			st.cases++
			f.send(op, c, f.w.ann, st)
			break
		}
	}
}

// report prints the table of what was sent and what came back, in the test log and on
// standard output (visible with go test -v).
func (f *fuzzer) report(ops []operation, took time.Duration) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "operation\troute\tcases\tsent\t2xx\t3xx\t4xx\t5xx\toff-contract\tfailed checks\t")
	var total opStats
	for _, id := range f.order {
		st := f.stats[id]
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", st.id, st.route, st.cases, st.sent, st.s2xx, st.s3xx, st.s4xx, st.s5xx, st.broken, st.failed)
		total.cases += st.cases
		total.sent += st.sent
		total.s2xx += st.s2xx
		total.s3xx += st.s3xx
		total.s4xx += st.s4xx
		total.s5xx += st.s5xx
		total.broken += st.broken
		total.failed += st.failed
	}
	fmt.Fprintf(tw, "total (%d operations)\t\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", len(ops), total.cases, total.sent, total.s2xx, total.s3xx, total.s4xx, total.s5xx, total.broken, total.failed)
	_ = tw.Flush()
	skips := sortedKeys(skipped)
	summary := fmt.Sprintf("specfuzz: seed %d, %d requests in %s; 5xx seen: %d (must be 0); skipped: %s\n%s",
		*seedFlag, total.sent, took.Round(time.Millisecond), total.s5xx, strings.Join(skips, ", "), b.String())
	if len(f.fails) > 0 {
		var lines []string
		for _, k := range sortedKeys(f.fails) {
			lines = append(lines, fmt.Sprintf("  %s: %d", strings.Replace(k, "|", " / ", 1), f.fails[k]))
		}
		summary += "failed checks by operation / check (known finding):\n" + strings.Join(lines, "\n") + "\n"
	}
	for _, fd := range findings {
		if n := f.found[fd.id]; n > 0 {
			summary += fmt.Sprintf("known finding %s (%d failed checks): %s\n", fd.id, n, fd.what)
		}
	}
	f.t.Log("\n" + summary)
	fmt.Print(summary)
}
