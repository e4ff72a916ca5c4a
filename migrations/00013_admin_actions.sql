-- The admin audit log: one row per action an operator took through the admin API, written
-- in the same transaction as the action itself, so an action is never without its record
-- (nor a record without its action). Append-only, like the ledger.
--
-- action: what was done (topup.refund, wallet.adjustment, ledger.audit); target_user_id /
-- target_topup_id: what it was done to, when anything; reason: the operator's words
-- (required of adjustments); detail: the action's particulars (amounts, the ledger
-- transaction, what an audit found).

-- +goose Up
CREATE TABLE admin_actions (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_id        uuid        NOT NULL REFERENCES users (id),
    action          text        NOT NULL CHECK (action IN ('topup.refund', 'wallet.adjustment', 'ledger.audit')),
    target_user_id  uuid        REFERENCES users (id),
    target_topup_id uuid        REFERENCES topups (id),
    reason          text        NOT NULL DEFAULT '' CHECK (length(reason) <= 500),
    detail          jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object'),
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- +goose StatementBegin
CREATE FUNCTION admin_actions_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the admin audit log is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER admin_actions_append_only BEFORE UPDATE OR DELETE ON admin_actions
    FOR EACH ROW EXECUTE FUNCTION admin_actions_refuse_change();
CREATE TRIGGER admin_actions_no_truncate BEFORE TRUNCATE ON admin_actions
    FOR EACH STATEMENT EXECUTE FUNCTION admin_actions_refuse_change();

-- +goose Down
DROP TABLE admin_actions;
DROP FUNCTION admin_actions_refuse_change();
