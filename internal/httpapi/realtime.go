package httpapi

import (
	"context"
	"strings"

	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/internal/realtime"
)

// realtimeHandlers serve the `realtime` tag (the upgrade itself is the gateway's).
type realtimeHandlers struct {
	tickets   *realtime.Tickets
	gateway   *realtime.Gateway
	publicURL string
}

func (h realtimeHandlers) CreateRealtimeTicket(ctx context.Context, _ api.CreateRealtimeTicketRequestObject) (api.CreateRealtimeTicketResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	ticket, err := h.tickets.Issue(ctx, p.UserID, p.SessionID)
	if err != nil {
		return nil, err
	}
	return api.CreateRealtimeTicket201JSONResponse{
		Ticket: ticket, ExpiresIn: int(realtime.TicketTTL.Seconds()),
		Url: wsURL(h.publicURL) + "/v1/realtime?ticket=" + ticket,
	}, nil
}

func (h realtimeHandlers) GetPresence(ctx context.Context, req api.GetPresenceRequestObject) (api.GetPresenceResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	online, err := h.gateway.Online(ctx, req.RoomId, p.UserID)
	if err != nil {
		return nil, err
	}
	return api.GetPresence200JSONResponse{RoomId: req.RoomId, Online: online}, nil
}

// wsURL turns the public http(s) URL into its ws(s) form.
func wsURL(public string) string {
	public = strings.TrimRight(public, "/")
	if rest, ok := strings.CutPrefix(public, "https://"); ok {
		return "wss://" + rest
	}
	if rest, ok := strings.CutPrefix(public, "http://"); ok {
		return "ws://" + rest
	}
	return public
}
