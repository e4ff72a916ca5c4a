// The room lists (joined, with unread counts; public, to join) and creating a room.
import type { components, ParlorClient, Room, RoomEvent } from "@parlor/client";
import { busy, byId, field, h, randomKey, showProblem } from "./dom.js";
import { retrying } from "./retry.js";
import type { WalletPanel } from "./wallet.js";

type ReadState = components["schemas"]["ReadState"];

export class RoomList {
  /** The caller's rooms, in the order the API lists them (oldest membership first). */
  readonly joined = new Map<string, Room>();
  private publicRooms: Room[] = [];
  private openId: string | undefined;
  private readonly joinedEl = byId("joined-rooms", HTMLUListElement);
  private readonly publicEl = byId("public-rooms", HTMLUListElement);
  private readonly dialog = byId("join-dialog", HTMLDialogElement);

  constructor(
    private readonly api: ParlorClient,
    private readonly wallet: WalletPanel,
    private readonly myId: string,
  ) {
    const form = byId("create-room-form", HTMLFormElement);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void busy(form, () => this.create(form));
    });
  }

  async load(): Promise<void> {
    const [joined, pub] = await Promise.all([
      this.api.GET("/v1/rooms", { params: { query: { scope: "joined", limit: 100 } } }),
      this.api.GET("/v1/rooms", { params: { query: { scope: "public", limit: 50 } } }),
    ]);
    if (joined.error) return showProblem(joined.error);
    if (pub.error) return showProblem(pub.error);
    this.joined.clear();
    for (const room of joined.data.items) this.joined.set(room.id, room);
    this.publicRooms = pub.data.items;
    this.render();
  }

  /** setOpen marks the room on screen; its messages count as read there. */
  setOpen(id: string | undefined): void {
    this.openId = id;
    this.render();
  }

  /** setRead takes the read state after the read marker moved. */
  setRead(state: ReadState): void {
    const m = this.joined.get(state.room_id)?.membership;
    if (!m) return;
    m.read_seq = state.read_seq;
    if (m.unread_count !== state.unread_count) {
      m.unread_count = state.unread_count;
      this.render();
    }
  }

  /** apply keeps the lists current with the live events of the caller's rooms. */
  apply(e: RoomEvent): void {
    const room = this.joined.get(e.room_id);
    if (room) {
      // The socket resumes from a token taken before the lists were loaded: an event the
      // list already counts (seq at or below last_seq) must not count twice.
      const isNew = e.seq > room.last_seq;
      room.last_seq = Math.max(room.last_seq, e.seq);
      const m = room.membership;
      const byOther = e.message !== undefined && e.message.author_id !== this.myId;
      if (m && byOther && isNew && e.room_id !== this.openId) {
        // Unread = messages by others after the read marker, not deleted.
        if (e.type === "message.created") m.unread_count++;
        if (e.type === "message.deleted" && e.message && e.message.seq > m.read_seq) {
          m.unread_count = Math.max(0, m.unread_count - 1);
        }
      }
      if (e.type === "room.updated" && e.room) {
        // Room events are shared by all members: keep our own membership.
        this.joined.set(e.room_id, room.membership ? { ...e.room, membership: room.membership } : e.room);
      }
      if (e.type === "room.deleted") this.joined.delete(e.room_id);
    }
    const aboutMe = e.user_id === this.myId;
    const membershipChange = ["member.joined", "member.left", "member.kicked", "member.banned"].includes(e.type);
    if (membershipChange && (aboutMe || !room)) {
      void this.load(); // joined or left in another tab, or was removed
      return;
    }
    this.render();
  }

  private render(): void {
    this.joinedEl.replaceChildren(
      ...Array.from(this.joined.values(), (room) => {
        const unread = room.membership?.unread_count ?? 0;
        return h(
          "li",
          {},
          h(
            "a",
            { href: `#room=${room.id}`, className: room.id === this.openId ? "room current" : "room", ariaCurrent: room.id === this.openId ? "page" : null },
            h("span", { className: "name" }, room.name),
            room.visibility === "private" && h("span", { className: "tag" }, "private"),
            unread > 0 && h("span", { className: "unread", title: `${unread} unread` }, String(unread)),
          ),
        );
      }),
    );
    if (this.joined.size === 0) this.joinedEl.append(h("li", { className: "empty" }, "No rooms yet: join or create one."));
    const joinable = this.publicRooms.filter((r) => !this.joined.has(r.id));
    this.publicEl.replaceChildren(
      ...joinable.map((room) =>
        h(
          "li",
          {},
          h(
            "span",
            { className: "info" },
            h("span", { className: "name" }, room.name),
            h("span", { className: "meta" }, ` ${room.member_count} ${room.member_count === 1 ? "member" : "members"}`),
          ),
          h(
            "button",
            { type: "button", onclick: () => void this.join(room), ariaLabel: `Join ${room.name}` },
            room.entry_price > 0 ? `Join for ${room.entry_price} credits` : "Join",
          ),
        ),
      ),
    );
    if (joinable.length === 0) this.publicEl.append(h("li", { className: "empty" }, "No other public rooms."));
  }

  /** join enters a room; a paid one asks first, showing its price and the balance. */
  private async join(room: Room): Promise<void> {
    if (room.entry_price > 0 && !(await this.confirmPrice(room))) return;
    // A paid room's join moves credits, so it needs an Idempotency-Key (one per click: the
    // retries below reuse it and replay the first answer). Free rooms accept one too.
    const key = randomKey();
    const { data, error } = await retrying(() =>
      this.api.POST("/v1/rooms/{room_id}/join", {
        params: { path: { room_id: room.id }, header: { "Idempotency-Key": key } },
      }),
    );
    if (error) return showProblem(error);
    this.joined.set(data.id, data);
    if (data.entry_price > 0) void this.wallet.refresh();
    location.hash = `room=${data.id}`;
    this.render();
  }

  private confirmPrice(room: Room): Promise<boolean> {
    byId("join-text", HTMLElement).textContent =
      `Joining “${room.name}” costs ${room.entry_price} credits, paid once. You have ${this.wallet.balance}.`;
    this.dialog.returnValue = "";
    this.dialog.showModal();
    return new Promise((resolve) => {
      this.dialog.addEventListener("close", () => resolve(this.dialog.returnValue === "join"), { once: true });
    });
  }

  private async create(form: HTMLFormElement): Promise<void> {
    const { data, error } = await this.api.POST("/v1/rooms", {
      body: {
        name: field(form, "name"),
        topic: field(form, "topic"),
        visibility: field(form, "visibility") === "private" ? "private" : "public",
        entry_price: Number(field(form, "entry_price") || "0"),
        // The generated types require fields that have a default in the contract.
        slow_mode_seconds: 0,
      },
    });
    if (error) return showProblem(error);
    form.reset();
    this.joined.set(data.id, data);
    location.hash = `room=${data.id}`;
    this.render();
  }
}
