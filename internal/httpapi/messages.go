package httpapi

import (
	"context"

	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/internal/apiconv"
	"github.com/parlor-dev/parlor/internal/chat"
	"github.com/parlor-dev/parlor/internal/rooms"
)

// messageHandlers serve the `messages` and `sync` tags.
type messageHandlers struct {
	svc   *chat.Service
	rooms *rooms.Service
}

func (h messageHandlers) SendMessage(ctx context.Context, req api.SendMessageRequestObject) (api.SendMessageResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	msg, created, err := h.svc.Send(ctx, req.RoomId, p.UserID, chat.SendInput{
		ClientMsgID: req.Body.ClientMsgId, Body: req.Body.Body, ReplyTo: req.Body.ReplyTo,
	})
	if err != nil {
		return nil, err
	}
	if created {
		return api.SendMessage201JSONResponse(apiconv.Message(msg)), nil
	}
	return api.SendMessage200JSONResponse(apiconv.Message(msg)), nil
}

func (h messageHandlers) ListMessages(ctx context.Context, req api.ListMessagesRequestObject) (api.ListMessagesResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	page, err := h.svc.History(ctx, req.RoomId, p.UserID, req.Params.BeforeSeq, req.Params.AfterSeq, limitOf(req.Params.Limit))
	if err != nil {
		return nil, err
	}
	out := api.MessagePage{Items: make([]api.Message, len(page.Items)), HasMore: page.HasMore}
	for i, m := range page.Items {
		out.Items[i] = apiconv.Message(m)
	}
	return api.ListMessages200JSONResponse(out), nil
}

func (h messageHandlers) EditMessage(ctx context.Context, req api.EditMessageRequestObject) (api.EditMessageResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	msg, err := h.svc.Edit(ctx, req.RoomId, req.MessageId, p.UserID, req.Body.Body)
	if err != nil {
		return nil, err
	}
	return api.EditMessage200JSONResponse(apiconv.Message(msg)), nil
}

func (h messageHandlers) DeleteMessage(ctx context.Context, req api.DeleteMessageRequestObject) (api.DeleteMessageResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.svc.Delete(ctx, req.RoomId, req.MessageId, p.UserID); err != nil {
		return nil, err
	}
	return api.DeleteMessage204Response{}, nil
}

func (h messageHandlers) AddReaction(ctx context.Context, req api.AddReactionRequestObject) (api.AddReactionResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.svc.React(ctx, req.RoomId, req.MessageId, p.UserID, req.Emoji, true); err != nil {
		return nil, err
	}
	return api.AddReaction204Response{}, nil
}

func (h messageHandlers) RemoveReaction(ctx context.Context, req api.RemoveReactionRequestObject) (api.RemoveReactionResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.svc.React(ctx, req.RoomId, req.MessageId, p.UserID, req.Emoji, false); err != nil {
		return nil, err
	}
	return api.RemoveReaction204Response{}, nil
}

func (h messageHandlers) MarkRead(ctx context.Context, req api.MarkReadRequestObject) (api.MarkReadResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	st, err := h.rooms.MarkRead(ctx, req.RoomId, p.UserID, req.Body.Seq)
	if err != nil {
		return nil, err
	}
	return api.MarkRead200JSONResponse{RoomId: st.RoomID, ReadSeq: st.ReadSeq, UnreadCount: st.UnreadCount}, nil
}

func (h messageHandlers) Sync(ctx context.Context, req api.SyncRequestObject) (api.SyncResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	limit := 100
	if req.Params.Limit != nil {
		limit = *req.Params.Limit
	}
	res, err := h.svc.Sync(ctx, p.UserID, deref(req.Params.Since), limit, millis(deref(req.Params.TimeoutMs)))
	if err != nil {
		return nil, err
	}
	out := api.SyncPage{NextToken: res.NextToken, HasMore: res.HasMore, Events: make([]api.RoomEvent, len(res.Events))}
	for i, e := range res.Events {
		out.Events[i] = apiconv.Event(e)
	}
	if res.Rooms != nil {
		rs := make([]api.Room, len(res.Rooms))
		for i, r := range res.Rooms {
			rs[i] = apiconv.Room(r)
		}
		out.Rooms = &rs
	}
	return api.Sync200JSONResponse(out), nil
}
