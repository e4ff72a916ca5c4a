package httpapi

import (
	"context"
	"time"

	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/internal/apiconv"
	"github.com/parlor-dev/parlor/internal/rooms"
)

// roomHandlers serve the `rooms` tag.
type roomHandlers struct {
	svc *rooms.Service
}

// defaultLimit is the page size when the client gives none.
const defaultLimit = 50

func limitOf(l *int) int {
	if l == nil {
		return defaultLimit
	}
	return *l
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func (h roomHandlers) CreateRoom(ctx context.Context, req api.CreateRoomRequestObject) (api.CreateRoomResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	b := req.Body
	room, err := h.svc.Create(ctx, p.UserID, rooms.CreateInput{
		Name: b.Name, Topic: deref(b.Topic), Visibility: string(deref(b.Visibility)),
		EntryPrice: deref(b.EntryPrice), SlowModeSeconds: deref(b.SlowModeSeconds),
	})
	if err != nil {
		return nil, err
	}
	return api.CreateRoom201JSONResponse(apiconv.Room(room)), nil
}

func (h roomHandlers) ListRooms(ctx context.Context, req api.ListRoomsRequestObject) (api.ListRoomsResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	page, err := h.svc.List(ctx, p.UserID, string(deref(req.Params.Scope)), deref(req.Params.Q), deref(req.Params.Cursor), limitOf(req.Params.Limit))
	if err != nil {
		return nil, err
	}
	out := api.RoomPage{Items: make([]api.Room, len(page.Items)), NextCursor: optional(page.NextCursor)}
	for i, r := range page.Items {
		out.Items[i] = apiconv.Room(r)
	}
	return api.ListRooms200JSONResponse(out), nil
}

func (h roomHandlers) GetRoom(ctx context.Context, req api.GetRoomRequestObject) (api.GetRoomResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	room, err := h.svc.Get(ctx, req.RoomId, p.UserID)
	if err != nil {
		return nil, err
	}
	return api.GetRoom200JSONResponse(apiconv.Room(room)), nil
}

func (h roomHandlers) UpdateRoom(ctx context.Context, req api.UpdateRoomRequestObject) (api.UpdateRoomResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	room, err := h.svc.Update(ctx, req.RoomId, p.UserID, rooms.UpdateInput{
		Name: req.Body.Name, Topic: req.Body.Topic, SlowModeSeconds: req.Body.SlowModeSeconds, Archived: req.Body.Archived,
	})
	if err != nil {
		return nil, err
	}
	return api.UpdateRoom200JSONResponse(apiconv.Room(room)), nil
}

func (h roomHandlers) DeleteRoom(ctx context.Context, req api.DeleteRoomRequestObject) (api.DeleteRoomResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.svc.Delete(ctx, req.RoomId, p.UserID); err != nil {
		return nil, err
	}
	return api.DeleteRoom204Response{}, nil
}

func (h roomHandlers) JoinRoom(ctx context.Context, req api.JoinRoomRequestObject) (api.JoinRoomResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	room, err := h.svc.Join(ctx, req.RoomId, p.UserID, deref(req.Params.IdempotencyKey))
	if err != nil {
		return nil, err
	}
	return api.JoinRoom200JSONResponse(apiconv.Room(room)), nil
}

func (h roomHandlers) LeaveRoom(ctx context.Context, req api.LeaveRoomRequestObject) (api.LeaveRoomResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.svc.Leave(ctx, req.RoomId, p.UserID); err != nil {
		return nil, err
	}
	return api.LeaveRoom204Response{}, nil
}

func (h roomHandlers) ListMembers(ctx context.Context, req api.ListMembersRequestObject) (api.ListMembersResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	page, err := h.svc.ListMembers(ctx, req.RoomId, p.UserID, deref(req.Params.Cursor), limitOf(req.Params.Limit))
	if err != nil {
		return nil, err
	}
	out := api.MemberPage{Items: make([]api.Member, len(page.Items)), NextCursor: optional(page.NextCursor)}
	for i, m := range page.Items {
		out.Items[i] = apiconv.Member(m)
	}
	return api.ListMembers200JSONResponse(out), nil
}

func (h roomHandlers) UpdateMember(ctx context.Context, req api.UpdateMemberRequestObject) (api.UpdateMemberResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	in := rooms.MemberUpdate{}
	if req.Body.Role != nil {
		role := string(*req.Body.Role)
		in.Role = &role
	}
	if until := req.Body.MutedUntil; until != nil {
		in.SetMute = true
		if until.After(time.Now()) {
			in.MutedUntil = until
		}
	}
	m, err := h.svc.UpdateMember(ctx, req.RoomId, p.UserID, req.UserId, in)
	if err != nil {
		return nil, err
	}
	return api.UpdateMember200JSONResponse(apiconv.Member(m)), nil
}

func (h roomHandlers) KickMember(ctx context.Context, req api.KickMemberRequestObject) (api.KickMemberResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.svc.Kick(ctx, req.RoomId, p.UserID, req.UserId); err != nil {
		return nil, err
	}
	return api.KickMember204Response{}, nil
}

func (h roomHandlers) InviteMember(ctx context.Context, req api.InviteMemberRequestObject) (api.InviteMemberResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	inv, err := h.svc.Invite(ctx, req.RoomId, p.UserID, req.Body.UserId)
	if err != nil {
		return nil, err
	}
	return api.InviteMember201JSONResponse{RoomId: inv.RoomID, UserId: inv.UserID, InvitedBy: inv.InvitedBy, CreatedAt: inv.CreatedAt}, nil
}

func (h roomHandlers) BanMember(ctx context.Context, req api.BanMemberRequestObject) (api.BanMemberResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	ban, err := h.svc.Ban(ctx, req.RoomId, p.UserID, req.Body.UserId, req.Body.Until, deref(req.Body.Reason))
	if err != nil {
		return nil, err
	}
	return api.BanMember201JSONResponse{
		RoomId: ban.RoomID, UserId: ban.UserID, BannedBy: ban.BannedBy, Until: ban.Until,
		Reason: optional(ban.Reason), CreatedAt: ban.CreatedAt,
	}, nil
}

func (h roomHandlers) UnbanMember(ctx context.Context, req api.UnbanMemberRequestObject) (api.UnbanMemberResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.svc.Unban(ctx, req.RoomId, p.UserID, req.UserId); err != nil {
		return nil, err
	}
	return api.UnbanMember204Response{}, nil
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
