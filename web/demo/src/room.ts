// One open room: its history (paged backwards by seq), live events, the composer (with the
// typing indicator), edits, deletes, reactions, members with presence, the read marker and
// tips. The room's DOM is built here and thrown away when another room opens.
import type { components, Message, ParlorClient, PresenceFrame, Room, RoomEvent, TypingFrame, User } from "@parlor/client";
import { busy, field, h, randomKey, shortId, showProblem } from "./dom.js";
import type { Realtime } from "./realtime.js";
import { retrying } from "./retry.js";
import type { WalletPanel } from "./wallet.js";

type RoomTip = components["schemas"]["RoomTip"];
type ReadState = components["schemas"]["ReadState"];

const PAGE_SIZE = 50;
const QUICK_REACTIONS = ["👍", "❤️", "😂", "🎉"];
/** Stop saying "typing" after this long without a keystroke. */
const TYPING_IDLE_MS = 3000;
const READ_DELAY_MS = 300;

export interface RoomContext {
  api: ParlorClient;
  me: User;
  realtime: Realtime;
  wallet: WalletPanel;
  /** The read marker moved: the room list shows the new unread count. */
  onRead(state: ReadState): void;
}

/** A message being sent: it keeps its client_msg_id, so a retry can never post it twice. */
interface Outgoing {
  clientMsgId: string;
  body: string;
  el: HTMLLIElement;
}

export class RoomView {
  readonly root: HTMLElement;
  readonly id: string;
  private readonly messages = new Map<string, Message>();
  private readonly messageEls = new Map<string, HTMLLIElement>();
  private readonly outgoing = new Map<string, Outgoing>();
  private readonly noticeSeqs = new Set<number>();
  /** Reactions of mine, as `${message_id} ${emoji}` (event frames omit the `me` flag). */
  private readonly mine = new Set<string>();
  private readonly names = new Map<string, string>();
  private readonly online = new Set<string>();
  private readonly typing = new Map<string, ReturnType<typeof setTimeout>>();
  private lastSeq: number; // the newest event of the room worth marking read
  private readSeq = 0;
  private readTimer: ReturnType<typeof setTimeout> | undefined;
  private typingSentAt = 0;
  private typingIdle: ReturnType<typeof setTimeout> | undefined;

  private readonly title = h("h2", { id: "room-title" });
  private readonly topic = h("p", { className: "topic" });
  private readonly list = h("ol", { className: "messages", ariaLabel: "Messages" });
  private readonly older = h("button", { type: "button", className: "older", hidden: true }, "Load older messages");
  private readonly typingEl = h("p", { className: "typing", ariaLive: "polite" });
  private readonly input = h("textarea", { id: "composer-input", name: "body", required: true, maxLength: 4000, rows: 2 });
  private readonly composer = h("form", { className: "composer" });
  private readonly membersEl = h("ul", { className: "members" });
  private readonly recipient = h("select", { id: "tip-recipient", name: "recipient", required: true });
  private readonly tipForm = h("form", { className: "tip" });

  constructor(
    private readonly ctx: RoomContext,
    room: Room,
  ) {
    this.id = room.id;
    this.title.textContent = room.name;
    this.topic.textContent = room.topic;
    this.lastSeq = room.last_seq;
    this.readSeq = room.membership?.read_seq ?? 0;
    this.list.setAttribute("role", "log"); // new messages are announced politely
    this.older.onclick = () => void this.loadOlder();
    this.composer.append(
      h("label", { htmlFor: "composer-input" }, "Message"),
      this.input,
      h("button", { type: "submit" }, "Send"),
    );
    this.composer.addEventListener("submit", (e) => {
      e.preventDefault();
      this.sendFromComposer();
    });
    // Enter sends, Shift+Enter starts a new line.
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.composer.requestSubmit();
      }
    });
    this.input.addEventListener("input", () => this.noteTyping());
    this.tipForm.append(
      h(
        "fieldset",
        {},
        h("legend", {}, "Tip a member"),
        h("label", { htmlFor: "tip-recipient" }, "To"),
        this.recipient,
        h("label", { htmlFor: "tip-amount" }, "Credits"),
        h("input", { id: "tip-amount", name: "amount", type: "number", min: "1", step: "1", required: true, value: "5" }),
        h("label", { htmlFor: "tip-message" }, "Note (optional)"),
        h("input", { id: "tip-message", name: "message", maxLength: 280 }),
        h("button", { type: "submit" }, "Send tip"),
      ),
    );
    this.tipForm.addEventListener("submit", (e) => {
      e.preventDefault();
      void busy(this.tipForm, () => this.tip());
    });
    this.root = h(
      "div",
      { className: "room" },
      h(
        "section",
        { className: "conversation", ariaLabel: room.name },
        h("header", {}, this.title, this.topic),
        this.older,
        this.list,
        this.typingEl,
        this.composer,
      ),
      h("aside", { className: "people", ariaLabel: "Members" }, h("h3", {}, "Members"), this.membersEl, this.tipForm),
    );
    document.addEventListener("visibilitychange", this.onVisible);
  }

  /** open loads members, presence and the latest page of history. */
  async open(): Promise<void> {
    const room_id = this.id;
    const [members, presence, history] = await Promise.all([
      this.ctx.api.GET("/v1/rooms/{room_id}/members", { params: { path: { room_id }, query: { limit: 100 } } }),
      this.ctx.api.GET("/v1/rooms/{room_id}/presence", { params: { path: { room_id } } }),
      this.ctx.api.GET("/v1/rooms/{room_id}/messages", { params: { path: { room_id }, query: { limit: PAGE_SIZE } } }),
    ]);
    if (members.error) return showProblem(members.error);
    for (const m of members.data.items) this.names.set(m.user_id, m.display_name);
    if (presence.data) for (const id of presence.data.online) this.online.add(id);
    this.renderMembers();
    if (history.error) return showProblem(history.error);
    this.addHistory(history.data.items);
    this.older.hidden = !history.data.has_more;
    this.list.scrollTop = this.list.scrollHeight;
    this.markRead();
  }

  close(): void {
    document.removeEventListener("visibilitychange", this.onVisible);
    clearTimeout(this.readTimer);
    for (const timer of this.typing.values()) clearTimeout(timer);
    this.stopTyping();
  }

  focus(): void {
    this.input.focus();
  }

  // --- history and live events ---

  private async loadOlder(): Promise<void> {
    const first = Math.min(...Array.from(this.messages.values(), (m) => m.seq));
    const { data, error } = await this.ctx.api.GET("/v1/rooms/{room_id}/messages", {
      params: { path: { room_id: this.id }, query: { before_seq: first, limit: PAGE_SIZE } },
    });
    if (error) return showProblem(error);
    this.addHistory(data.items);
    this.older.hidden = !data.has_more;
  }

  /** addHistory shows a page of history; a live event that came first is newer, and stays. */
  private addHistory(page: Message[]): void {
    for (const m of page) if (!this.messages.has(m.id)) this.upsert(m);
  }

  /** apply takes a live event of this room (from the socket, in seq order). */
  apply(e: RoomEvent): void {
    // A read marker is not something to read: taking one as news would make two open pages
    // answer each other's markers for ever (each moved marker is a room event of its own).
    if (e.type !== "read.updated") this.lastSeq = Math.max(this.lastSeq, e.seq);
    switch (e.type) {
      case "message.created":
      case "message.edited":
      case "message.deleted":
        if (e.message) this.upsert(e.message);
        if (e.type === "message.created" && e.message) this.clearTyping(e.message.author_id);
        break;
      case "reaction.added":
      case "reaction.removed":
        if (e.reaction && e.actor_id === this.ctx.me.id) {
          const key = `${e.reaction.message_id} ${e.reaction.emoji}`;
          if (e.type === "reaction.added") this.mine.add(key);
          else this.mine.delete(key);
        }
        if (e.message) this.upsert(e.message);
        break;
      case "member.joined":
        if (e.member) this.names.set(e.member.user_id, e.member.display_name);
        this.renderMembers();
        this.notice(e.seq, `${this.name(e.user_id ?? e.actor_id)} joined`);
        break;
      case "member.left":
      case "member.kicked":
      case "member.banned":
        this.notice(e.seq, `${this.name(e.user_id ?? e.actor_id)} ${e.type === "member.left" ? "left" : "was removed"}`);
        if (e.user_id) this.names.delete(e.user_id);
        this.renderMembers();
        break;
      case "tip":
        if (e.tip) this.notice(e.seq, this.tipText(e.tip));
        break;
      case "room.updated":
        if (e.room) {
          this.title.textContent = e.room.name;
          this.topic.textContent = e.room.topic;
        }
        break;
      default:
        break;
    }
    this.markRead();
  }

  /** upsert shows a message (new, edited, deleted, re-reacted) at its place by seq. */
  private upsert(m: Message): void {
    for (const r of m.reactions) {
      if (r.me === true) this.mine.add(`${m.id} ${r.emoji}`); // REST pages carry `me`
      if (r.me === false) this.mine.delete(`${m.id} ${r.emoji}`);
    }
    this.messages.set(m.id, m);
    const el = this.renderMessage(m);
    const old = this.messageEls.get(m.id);
    this.messageEls.set(m.id, el);
    if (old) {
      old.replaceWith(el);
      return;
    }
    // Our own message, sent from here: it replaces its "sending…" line.
    const sent = this.outgoing.get(m.client_msg_id);
    if (sent && m.author_id === this.ctx.me.id) {
      this.outgoing.delete(m.client_msg_id);
      sent.el.remove();
    }
    this.insertBySeq(el, m.seq);
  }

  /**
   * notice shows a membership change or a tip in the timeline. History pages hold messages
   * only, so these appear live and are not reloaded.
   */
  private notice(seq: number, text: string): void {
    if (this.noticeSeqs.has(seq)) return; // a tip of ours: shown on the answer and the event
    this.noticeSeqs.add(seq);
    this.insertBySeq(h("li", { className: "notice" }, text), seq);
  }

  private tipText(t: RoomTip): string {
    const note = t.message ? `: “${t.message}”` : "";
    return `${this.name(t.sender_id)} tipped ${this.name(t.recipient_id)} ${t.amount} credits${note}`;
  }

  private insertBySeq(el: HTMLLIElement, seq: number): void {
    el.dataset["seq"] = String(seq);
    const stick = this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - 40;
    const later = Array.from(this.list.children).find((c) => c instanceof HTMLElement && Number(c.dataset["seq"] ?? Infinity) > seq);
    this.list.insertBefore(el, later ?? null);
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }

  private renderMessage(m: Message): HTMLLIElement {
    const mine = m.author_id === this.ctx.me.id;
    const li = h("li", { className: `message${mine ? " mine" : ""}${m.deleted ? " deleted" : ""}`, id: `m-${m.id}` });
    li.append(
      h(
        "p",
        { className: "meta" },
        h("strong", {}, this.name(m.author_id)),
        " ",
        h("time", { dateTime: m.created_at }, new Date(m.created_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })),
        m.edited_at && !m.deleted && h("span", { className: "edited" }, " (edited)"),
      ),
      h("p", { className: "body" }, m.deleted ? "This message was deleted." : (m.body ?? "")),
    );
    if (m.deleted) return li;
    li.append(this.renderReactions(m));
    if (mine) {
      li.append(
        h(
          "p",
          { className: "actions" },
          h("button", { type: "button", onclick: () => this.edit(m, li) }, "Edit"),
          h("button", { type: "button", onclick: () => void this.remove(m) }, "Delete"),
        ),
      );
    }
    return li;
  }

  private renderReactions(m: Message): HTMLElement {
    const counts = new Map<string, number>(QUICK_REACTIONS.map((e) => [e, 0]));
    for (const r of m.reactions) counts.set(r.emoji, r.count);
    return h(
      "p",
      { className: "reactions" },
      ...Array.from(counts, ([emoji, count]) => {
        const pressed = this.mine.has(`${m.id} ${emoji}`);
        return h(
          "button",
          {
            type: "button",
            className: count > 0 ? "reaction used" : "reaction",
            ariaPressed: String(pressed),
            ariaLabel: `${emoji} ${count}, ${pressed ? "remove my reaction" : "react"}`,
            onclick: () => void this.react(m, emoji, !pressed),
          },
          count > 0 ? `${emoji} ${count}` : emoji,
        );
      }),
    );
  }

  // --- writing ---

  private sendFromComposer(): void {
    const body = this.input.value.trim();
    if (!body) return;
    this.input.value = "";
    this.stopTyping();
    const out: Outgoing = { clientMsgId: randomKey(), body, el: h("li", { className: "message mine pending" }) };
    this.outgoing.set(out.clientMsgId, out);
    this.list.append(out.el);
    this.list.scrollTop = this.list.scrollHeight;
    void this.send(out);
  }

  /** send posts (or re-posts) an outgoing message; the same client_msg_id every time. */
  private async send(out: Outgoing): Promise<void> {
    out.el.replaceChildren(h("p", { className: "meta" }, h("strong", {}, this.ctx.me.display_name), " sending…"), h("p", { className: "body" }, out.body));
    let failure: string;
    try {
      const { data, error } = await retrying(() =>
        this.ctx.api.POST("/v1/rooms/{room_id}/messages", {
          params: { path: { room_id: this.id } },
          body: { client_msg_id: out.clientMsgId, body: out.body },
        }),
      );
      if (data) {
        this.upsert(data); // 201, or 200 for a retry of one already stored
        return;
      }
      failure = error.detail ?? error.title;
    } catch (err) {
      failure = err instanceof Error ? err.message : "network error";
    }
    out.el.replaceChildren(
      h("p", { className: "meta" }, h("strong", {}, this.ctx.me.display_name), ` not sent: ${failure} `),
      h("p", { className: "body" }, out.body),
      h("p", { className: "actions" }, h("button", { type: "button", onclick: () => void this.send(out) }, "Retry")),
    );
  }

  private edit(m: Message, li: HTMLLIElement): void {
    const input = h("input", { value: m.body ?? "", required: true, maxLength: 4000, ariaLabel: "Edit message" });
    const form = h(
      "form",
      { className: "edit" },
      input,
      h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", onclick: () => this.upsert(this.messages.get(m.id) ?? m) }, "Cancel"),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void busy(form, async () => {
        const { data, error } = await this.ctx.api.PATCH("/v1/rooms/{room_id}/messages/{message_id}", {
          params: { path: { room_id: this.id, message_id: m.id } },
          body: { body: input.value.trim() },
        });
        if (error) return showProblem(error);
        this.upsert(data);
      });
    });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.upsert(this.messages.get(m.id) ?? m);
    });
    const body = li.querySelector(".body");
    body?.replaceWith(form);
    li.querySelector(".actions")?.remove();
    input.focus();
  }

  private async remove(m: Message): Promise<void> {
    const { error } = await this.ctx.api.DELETE("/v1/rooms/{room_id}/messages/{message_id}", {
      params: { path: { room_id: this.id, message_id: m.id } },
    });
    if (error) return showProblem(error);
    // The message.deleted event brings the tombstone too; show it now in case the socket is down.
    this.upsert({ ...m, body: null, deleted: true, reactions: [] });
  }

  private async react(m: Message, emoji: string, add: boolean): Promise<void> {
    const params = { params: { path: { room_id: this.id, message_id: m.id, emoji } } };
    const { error } = add
      ? await this.ctx.api.PUT("/v1/rooms/{room_id}/messages/{message_id}/reactions/{emoji}", params)
      : await this.ctx.api.DELETE("/v1/rooms/{room_id}/messages/{message_id}/reactions/{emoji}", params);
    if (error) return showProblem(error);
    // The reaction event updates the counts; our own state is known now.
    if (add) this.mine.add(`${m.id} ${emoji}`);
    else this.mine.delete(`${m.id} ${emoji}`);
    const current = this.messages.get(m.id);
    if (current) this.upsert(current);
  }

  private async tip(): Promise<void> {
    const recipient = field(this.tipForm, "recipient");
    const amount = Number(field(this.tipForm, "amount"));
    const message = field(this.tipForm, "message");
    const key = randomKey(); // this tip, however often the request is retried
    const { data, error } = await retrying(() =>
      this.ctx.api.POST("/v1/rooms/{room_id}/tips", {
        params: { path: { room_id: this.id }, header: { "Idempotency-Key": key } },
        body: message ? { recipient_id: recipient, amount, message } : { recipient_id: recipient, amount },
      }),
    );
    if (error) return showProblem(error);
    this.tipForm.reset();
    this.recipient.value = recipient;
    this.notice(data.seq, this.tipText(data));
    await this.ctx.wallet.refresh();
  }

  // --- typing and presence ---

  /** noteTyping sends typing.start, renewed well within the server's typing timeout. */
  private noteTyping(): void {
    if (!this.input.value.trim()) return this.stopTyping();
    const renewMs = (this.ctx.realtime.limits?.typing_timeout_ms ?? 5000) / 2;
    if (Date.now() - this.typingSentAt > renewMs) {
      this.ctx.realtime.send({ type: "typing.start", room_id: this.id });
      this.typingSentAt = Date.now();
    }
    clearTimeout(this.typingIdle);
    this.typingIdle = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  private stopTyping(): void {
    clearTimeout(this.typingIdle);
    if (this.typingSentAt === 0) return;
    this.typingSentAt = 0;
    this.ctx.realtime.send({ type: "typing.stop", room_id: this.id });
  }

  showTyping(f: TypingFrame): void {
    if (f.user_id === this.ctx.me.id) return;
    this.clearTyping(f.user_id);
    if (f.typing) {
      const ttl = f.expires_in_ms ?? this.ctx.realtime.limits?.typing_timeout_ms ?? 5000;
      this.typing.set(f.user_id, setTimeout(() => this.clearTyping(f.user_id), ttl));
    }
    this.renderTyping();
  }

  private clearTyping(userId: string): void {
    clearTimeout(this.typing.get(userId));
    if (this.typing.delete(userId)) this.renderTyping();
  }

  private renderTyping(): void {
    const names = Array.from(this.typing.keys(), (id) => this.name(id));
    this.typingEl.textContent =
      names.length === 0 ? "" : `${names.join(" and ")} ${names.length === 1 ? "is" : "are"} typing…`;
  }

  showPresence(f: PresenceFrame): void {
    if (f.online) this.online.add(f.user_id);
    else this.online.delete(f.user_id);
    this.renderMembers();
  }

  private renderMembers(): void {
    const ids = Array.from(this.names.keys());
    this.membersEl.replaceChildren(
      ...ids.map((id) => {
        const on = this.online.has(id) || id === this.ctx.me.id;
        return h(
          "li",
          { className: on ? "online" : "offline" },
          h("span", { className: "dot", ariaHidden: "true" }),
          this.name(id),
          h("span", { className: "visually-hidden" }, on ? " (online)" : " (offline)"),
        );
      }),
    );
    const chosen = this.recipient.value;
    const others = ids.filter((id) => id !== this.ctx.me.id);
    this.recipient.replaceChildren(...others.map((id) => h("option", { value: id, selected: id === chosen }, this.name(id))));
    this.tipForm.hidden = others.length === 0;
  }

  private name(id: string): string {
    if (id === this.ctx.me.id) return this.names.get(id) ?? this.ctx.me.display_name;
    return this.names.get(id) ?? shortId(id);
  }

  // --- read marker ---

  /** markRead moves the read marker to the newest event once the user can see it. */
  private markRead(): void {
    if (document.visibilityState !== "visible" || this.lastSeq <= this.readSeq) return;
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => void this.postRead(), READ_DELAY_MS);
  }

  private async postRead(): Promise<void> {
    const seq = this.lastSeq;
    const { data } = await this.ctx.api.POST("/v1/rooms/{room_id}/read", {
      params: { path: { room_id: this.id } },
      body: { seq },
    });
    if (!data) return; // not worth bothering the user; the next event tries again
    this.readSeq = Math.max(this.readSeq, data.read_seq);
    this.ctx.onRead(data);
  }

  private readonly onVisible = (): void => this.markRead();
}
