package httpapi

import (
	"context"

	"github.com/parlor-dev/parlor/gen/api"
	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/auth"
)

// authHandlers serve the `auth` tag.
type authHandlers struct {
	svc *auth.Service
}

func (h authHandlers) Register(ctx context.Context, req api.RegisterRequestObject) (api.RegisterResponseObject, error) {
	s, err := h.svc.Register(ctx, auth.RegisterInput{
		Email: req.Body.Email, Password: req.Body.Password, DisplayName: req.Body.DisplayName,
	}, clientOf(ctx))
	if err != nil {
		return nil, err
	}
	return api.Register201JSONResponse(toAPISession(s)), nil
}

func (h authHandlers) Login(ctx context.Context, req api.LoginRequestObject) (api.LoginResponseObject, error) {
	s, err := h.svc.Login(ctx, req.Body.Email, req.Body.Password, clientOf(ctx))
	if err != nil {
		return nil, err
	}
	return api.Login200JSONResponse(toAPISession(s)), nil
}

func (h authHandlers) Refresh(ctx context.Context, req api.RefreshRequestObject) (api.RefreshResponseObject, error) {
	s, err := h.svc.Refresh(ctx, req.Body.RefreshToken)
	if err != nil {
		return nil, err
	}
	return api.Refresh200JSONResponse(toAPISession(s)), nil
}

func (h authHandlers) Logout(ctx context.Context, _ api.LogoutRequestObject) (api.LogoutResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.svc.Logout(ctx, p.SessionID); err != nil {
		return nil, err
	}
	return api.Logout204Response{}, nil
}

func (h authHandlers) GetMe(ctx context.Context, _ api.GetMeRequestObject) (api.GetMeResponseObject, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	u, err := h.svc.User(ctx, p.UserID)
	if err != nil {
		return nil, err
	}
	return api.GetMe200JSONResponse(toAPIUser(u)), nil
}

// principal returns the authenticated caller. The validator guarantees one on every
// secured operation; its absence is a wiring bug, reported as such.
func principal(ctx context.Context) (auth.Principal, error) {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return auth.Principal{}, apperr.New(apperr.Unauthorized, "authentication is required")
	}
	return p, nil
}

func toAPISession(s auth.Session) api.AuthSession {
	return api.AuthSession{
		AccessToken:      s.AccessToken,
		RefreshToken:     s.RefreshToken,
		TokenType:        api.Bearer,
		ExpiresIn:        int(s.AccessExpiresIn.Seconds()),
		RefreshExpiresIn: int(s.RefreshExpiresIn.Seconds()),
		User:             toAPIUser(s.User),
	}
}

func toAPIUser(u auth.User) api.User {
	return api.User{Id: u.ID, Email: u.Email, DisplayName: u.DisplayName, CreatedAt: u.CreatedAt}
}
