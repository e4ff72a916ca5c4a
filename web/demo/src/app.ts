// The signed-in app: room lists, the open room, the wallet, and the one realtime socket that
// feeds them all.
import type { RoomEvent, ServerFrame, User } from "@parlor/client";
import { byId, showProblem } from "./dom.js";
import { Realtime } from "./realtime.js";
import { RoomView } from "./room.js";
import { RoomList } from "./rooms.js";
import { STORAGE_PREFIX, type Session } from "./session.js";
import { WalletPanel } from "./wallet.js";

/** The room to reopen after a trip to the checkout page (its return URL has no #room=). */
const LAST_ROOM_KEY = `${STORAGE_PREFIX}room`;

export class App {
  private readonly me: User;
  private readonly wallet: WalletPanel;
  private readonly rooms: RoomList;
  private realtime: Realtime | undefined;
  private view: RoomView | undefined;
  private readonly panel = byId("room-panel", HTMLElement);
  private readonly statusEl = byId("connection", HTMLElement);

  constructor(
    private readonly session: Session,
    me: User,
  ) {
    this.me = me;
    this.wallet = new WalletPanel(session.api);
    this.rooms = new RoomList(session.api, this.wallet, me.id);
  }

  async start(): Promise<void> {
    // A sync token first: the socket resumes from it, so whatever commits while the lists and
    // history load still reaches us (and what reaches us twice is merged by id and seq).
    const token = await this.syncToken();
    if (token === undefined) return;
    this.realtime = new Realtime(this.session.api, token, {
      frame: (f) => this.onFrame(f),
      status: (text, live) => {
        this.statusEl.textContent = `Realtime: ${text}`;
        this.statusEl.classList.toggle("live", live);
      },
      sessionEnded: () => this.session.end("You were signed out (the session was ended elsewhere)."),
      startOver: async () => {
        const fresh = await this.syncToken();
        if (fresh === undefined) throw new Error("sync failed");
        await this.rooms.load();
        this.view?.close();
        this.view = undefined; // reopened with fresh history
        await this.openFromLocation();
        return fresh;
      },
    });
    await Promise.all([this.rooms.load(), this.wallet.load()]);
    this.realtime.start();
    window.addEventListener("hashchange", this.onHashChange);
    await this.openFromLocation(true);
  }

  stop(): void {
    window.removeEventListener("hashchange", this.onHashChange);
    this.realtime?.stop();
    this.wallet.stop();
    this.view?.close();
    this.view = undefined;
    this.panel.replaceChildren();
  }

  private async syncToken(): Promise<string | undefined> {
    const { data, error } = await this.session.api.GET("/v1/sync");
    if (error) {
      showProblem(error);
      return undefined;
    }
    return data.next_token;
  }

  private onFrame(frame: ServerFrame): void {
    switch (frame.type) {
      case "event":
        this.onEvent(frame.event);
        break;
      case "typing":
        if (frame.room_id === this.view?.id) this.view.showTyping(frame);
        break;
      case "presence":
        if (frame.room_id === this.view?.id) this.view.showPresence(frame);
        break;
      default:
        break; // hello, pong and error frames are the socket's business
    }
  }

  private onEvent(e: RoomEvent): void {
    this.rooms.apply(e);
    if (e.room_id === this.view?.id) {
      const gone = e.type === "room.deleted" || (e.user_id === this.me.id && ["member.left", "member.kicked", "member.banned"].includes(e.type));
      if (gone) location.hash = ""; // back to the room list
      else this.view.apply(e);
    }
    // Tips to or from us, and the price of a paid room we joined, change the balance.
    const tip = e.type === "tip" ? e.tip : undefined;
    if (tip && (tip.recipient_id === this.me.id || tip.sender_id === this.me.id)) void this.wallet.refresh();
  }

  private readonly onHashChange = (): void => void this.openFromLocation();

  /**
   * openFromLocation opens the room named by #room=ID, if we are in it. On start it falls back
   * to the room open before the page was left (for the way back from checkout).
   */
  private async openFromLocation(orLast = false): Promise<void> {
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("room");
    const id = fromHash ?? (orLast ? sessionStorage.getItem(LAST_ROOM_KEY) : null) ?? undefined;
    const room = id ? this.rooms.joined.get(id) : undefined;
    if (room?.id === this.view?.id && this.view) return;
    this.view?.close();
    this.view = undefined;
    this.rooms.setOpen(room?.id);
    if (!room || !this.realtime) {
      sessionStorage.removeItem(LAST_ROOM_KEY);
      this.panel.replaceChildren(byId("no-room-template", HTMLTemplateElement).content.cloneNode(true));
      return;
    }
    sessionStorage.setItem(LAST_ROOM_KEY, room.id);
    if (!fromHash) history.replaceState(null, "", `#room=${room.id}`);
    const view = new RoomView(
      {
        api: this.session.api,
        me: this.me,
        realtime: this.realtime,
        wallet: this.wallet,
        onRead: (state) => this.rooms.setRead(state),
      },
      room,
    );
    this.view = view;
    this.panel.replaceChildren(view.root);
    await view.open();
    if (this.view === view) view.focus();
  }
}
