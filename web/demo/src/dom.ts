// Small DOM helpers. Text always goes in as text (textContent), never as HTML.
import type { Problem } from "@parlor/client";

type Child = Node | string | false | null | undefined;
/** Props are plain element properties: className, type, onclick, disabled, ariaLabel, … */
type Props<K extends keyof HTMLElementTagNameMap> = Partial<Omit<HTMLElementTagNameMap[K], "style" | "dataset">>;

/** h creates an element with properties and children: h("button", { type: "button" }, "Save"). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props<K> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = Object.assign(document.createElement(tag), props);
  for (const child of children) {
    if (child !== false && child !== null && child !== undefined) el.append(child);
  }
  return el;
}

/** byId returns the element with this id, of the expected type, or throws (a bug in index.html). */
export function byId<T extends HTMLElement>(id: string, type: new () => T): T {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`#${id} is missing or not a ${type.name}`);
  return el;
}

const problemBox = (): HTMLElement => byId("problem", HTMLElement);

/**
 * showProblem tells the user what went wrong: a problem's `detail` (or its title), the
 * message of a failed fetch, or the text given.
 */
export function showProblem(what: Problem | Error | string): void {
  let text: string;
  if (typeof what === "string") text = what;
  else if (what instanceof TypeError) text = `Network error: ${what.message}`; // fetch rejected
  else if (what instanceof Error) text = what.message;
  else text = what.detail ?? what.title;
  byId("problem-text", HTMLElement).textContent = text;
  problemBox().hidden = false;
}

export function clearProblem(): void {
  problemBox().hidden = true;
}

/** formData reads a form's named field as a trimmed string. */
export function field(form: HTMLFormElement, name: string): string {
  const value = new FormData(form).get(name);
  return typeof value === "string" ? value.trim() : "";
}

/**
 * busy disables a form's buttons while work runs, so a double click or a second Enter sends
 * nothing twice. (Not its inputs: FormData skips disabled fields.)
 */
export async function busy<T>(form: HTMLFormElement, work: () => Promise<T>): Promise<T> {
  const buttons = Array.from(form.querySelectorAll("button"));
  for (const b of buttons) b.disabled = true;
  form.ariaBusy = "true";
  try {
    return await work();
  } finally {
    for (const b of buttons) b.disabled = false;
    form.ariaBusy = null;
  }
}

/** shortId is a readable stand-in for a user we have no name for. */
export const shortId = (id: string): string => `user ${id.slice(0, 8)}`;

/**
 * randomKey makes a UUID v4 for a client_msg_id or an Idempotency-Key. (crypto.randomUUID
 * would do, but only on https or localhost pages; getRandomValues works everywhere.)
 */
export function randomKey(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x40; // version 4
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80; // RFC 9562 variant
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
