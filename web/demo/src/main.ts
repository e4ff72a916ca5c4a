// Parlor's demo web client: the entry point. Signed out, it shows the sign-in and register
// forms; signed in, the App. Every REST call goes through @parlor/client (typed by the
// contract); the realtime socket speaks the contract's ServerFrame/ClientFrame types.
import { App } from "./app.js";
import { busy, byId, clearProblem, field, showProblem } from "./dom.js";
import { Session } from "./session.js";

const session = new Session(location.origin);
let app: App | undefined;

const signedOut = byId("signed-out", HTMLElement);
const signedIn = byId("signed-in", HTMLElement);
const whoami = byId("whoami", HTMLElement);

async function showSignedIn(): Promise<void> {
  const me = session.user;
  if (!me) return showSignedOut();
  signedOut.hidden = true;
  signedIn.hidden = false;
  whoami.hidden = false;
  byId("me-name", HTMLElement).textContent = me.display_name;
  app = new App(session, me);
  await app.start();
}

function showSignedOut(reason?: string): void {
  app?.stop();
  app = undefined;
  signedIn.hidden = true;
  whoami.hidden = true;
  signedOut.hidden = false;
  byId("connection", HTMLElement).textContent = "";
  if (reason) showProblem(reason);
  byId("login-email", HTMLInputElement).focus();
}

session.onEnded = (reason) => showSignedOut(reason);

function onSubmit(id: string, handler: (form: HTMLFormElement) => Promise<void>): void {
  const form = byId(id, HTMLFormElement);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    clearProblem();
    busy(form, () => handler(form)).catch((err: unknown) => showProblem(err instanceof Error ? err : String(err)));
  });
}

onSubmit("login-form", async (form) => {
  const problem = await session.logIn(field(form, "email"), byId("login-password", HTMLInputElement).value);
  if (problem) return showProblem(problem);
  form.reset();
  await showSignedIn();
});

onSubmit("register-form", async (form) => {
  const problem = await session.register(
    field(form, "email"),
    byId("register-password", HTMLInputElement).value, // passwords are not trimmed
    field(form, "display_name"),
  );
  if (problem) return showProblem(problem);
  form.reset();
  await showSignedIn();
});

byId("logout", HTMLButtonElement).addEventListener("click", () => {
  // Close the socket first: logging out closes it with 4001, which is not news to us.
  app?.stop();
  app = undefined;
  session
    .logOut()
    .catch((err: unknown) => showProblem(err instanceof Error ? err : String(err)))
    .finally(() => showSignedOut());
});

byId("problem-close", HTMLButtonElement).addEventListener("click", clearProblem);

// Unexpected failures (a fetch that rejected, say) end up in front of the user too.
window.addEventListener("unhandledrejection", (e: PromiseRejectionEvent) => {
  const reason: unknown = e.reason;
  showProblem(reason instanceof Error ? reason : String(reason));
});

if (session.user) void showSignedIn();
else showSignedOut();
