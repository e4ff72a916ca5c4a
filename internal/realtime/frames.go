package realtime

import (
	"encoding/binary"
	"encoding/json"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/parlor-dev/parlor/internal/events"
)

// WebSocket opcodes (RFC 6455, 5.2).
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// frame is one WebSocket frame ready for the wire, shared by every socket it goes to: an
// event is serialized, given its token and framed once, whatever the number of subscribers.
type frame struct {
	wire    []byte
	durable bool         // an event: a full queue closes the socket rather than drop it
	batch   uint64       // for a durable frame: the fan-out batch it came in
	kind    string       // what a droppable frame is, for the dropped-frames metric
	event   events.Event // for a durable frame: the event it carries
	// For an event frame, its RoomEvent and its token, within wire: a socket that takes
	// batches joins consecutive event frames into one `events` frame from them.
	eventJSON, token []byte
}

// appendHeader appends the header of one final, unmasked frame (the server never masks)
// whose payload is n bytes long.
func appendHeader(b []byte, op byte, n int) []byte {
	switch {
	case n < 126:
		return append(b, 0x80|op, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(b, 0x80|op, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0x80|op, 127), uint64(n))
	}
}

// wsFrame frames a payload as one final, unmasked frame.
func wsFrame(op byte, payload []byte) []byte {
	return append(appendHeader(make([]byte, 0, 10+len(payload)), op, len(payload)), payload...)
}

// droppable frames a JSON frame that may be lost when a socket's queue is full.
func droppable(kind string, v any) *frame {
	return &frame{wire: wsFrame(opText, mustFrame(v)), kind: kind}
}

var pingFrame = &frame{wire: wsFrame(opPing, nil), kind: "ping"}

// maxCloseReason is the longest reason a close frame carries: RFC 6455 allows a control
// frame 125 bytes of payload, two of which are the code.
const maxCloseReason = 123

// closeFrame frames a close with its code and reason, the reason cut to fit (at a UTF-8
// boundary): a longer one would make the frame a protocol error, not a close.
func closeFrame(code int, reason string) []byte {
	if len(reason) > maxCloseReason {
		cut := maxCloseReason
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	return wsFrame(opClose, websocket.FormatCloseMessage(code, reason))
}

func mustFrame(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own frame types always encode
	}
	return b
}

const (
	eventHead  = `{"type":"event","token":"`
	eventMid   = `","event":`
	eventsHead = `{"type":"events","token":"`
	eventsMid  = `","events":[`
	eventsTail = `]}`
	// maxHeader is the longest frame header the server writes.
	maxHeader = 10
)

// eventFrame composes an event frame around the event's shared serialization.
func eventFrame(e events.Event, event []byte, token string) *frame {
	n := len(eventHead) + len(token) + len(eventMid) + len(event) + 1
	wire := appendHeader(make([]byte, 0, maxHeader+n), opText, n)
	at := len(wire) + len(eventHead)
	wire = append(wire, eventHead...)
	wire = append(wire, token...)
	wire = append(wire, eventMid...)
	wire = append(wire, event...)
	wire = append(wire, '}')
	tok := wire[at : at+len(token)]
	ev := wire[at+len(token)+len(eventMid) : len(wire)-1]
	return &frame{wire: wire, event: e, durable: true, eventJSON: ev, token: tok}
}

// nextUnit says which of q's frames, from i, go out as one frame on a socket that takes
// batches (batch true) or not: a run of two or more event frames becomes one `events`
// frame of at most maxWriteBytes; any other frame goes alone, as it is. It returns the end
// of the unit and its size on the wire.
func nextUnit(q []*frame, i int, batch bool) (end, size int) {
	if !batch || q[i].eventJSON == nil {
		return i + 1, len(q[i].wire)
	}
	events := 0 // the events' bytes, with the commas between them
	end = i
	for end < len(q) && q[end].eventJSON != nil {
		more := events + len(q[end].eventJSON)
		if end > i {
			more++
		}
		if end > i && maxHeader+eventsPayload(more, q[end].token) > maxWriteBytes {
			break
		}
		events = more
		end++
	}
	if end == i+1 {
		return end, len(q[i].wire)
	}
	n := eventsPayload(events, q[end-1].token)
	return end, len(appendHeader(nil, opText, n)) + n
}

func eventsPayload(events int, token []byte) int {
	return len(eventsHead) + len(token) + len(eventsMid) + events + len(eventsTail)
}

// appendUnit appends a unit of nextUnit to b: a lone frame as it is, a run of event frames
// as one `events` frame with the token of the last.
func appendUnit(b []byte, unit []*frame) []byte {
	if len(unit) == 1 {
		return append(b, unit[0].wire...)
	}
	events := len(unit) - 1
	for _, f := range unit {
		events += len(f.eventJSON)
	}
	token := unit[len(unit)-1].token
	b = appendHeader(b, opText, eventsPayload(events, token))
	b = append(b, eventsHead...)
	b = append(b, token...)
	b = append(b, eventsMid...)
	for k, f := range unit {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, f.eventJSON...)
	}
	return append(b, eventsTail...)
}

// wires returns q's frames as nextUnit joins them, each unit's bytes for the wire.
func wires(q []*frame, batch bool) [][]byte {
	out := make([][]byte, 0, len(q))
	for i := 0; i < len(q); {
		end, _ := nextUnit(q, i, batch)
		if end == i+1 {
			out = append(out, q[i].wire)
		} else {
			out = append(out, appendUnit(nil, q[i:end]))
		}
		i = end
	}
	return out
}
