// Configures the vendored Scalar API reference (scalar.js) for /docs/.
//
// The page must work offline and behind `Content-Security-Policy: default-src 'self'`-style
// rules, so everything that would reach a Scalar-hosted service is switched off. Option names
// are those of @scalar/types' apiReferenceConfigurationSchema in the vendored version.
(function () {
  "use strict";

  if (!window.Scalar || typeof window.Scalar.createApiReference !== "function") {
    document.getElementById("app").textContent =
      "The API reference bundle did not load. The contract is at /openapi.yaml and /openapi.json.";
    return;
  }

  window.Scalar.createApiReference("#app", {
    // The contract, served by the same binary.
    url: "/openapi.json",
    // "Try it" requests go straight to this origin (the spec's server is "/").
    baseServerURL: window.location.origin,

    // --- nothing leaves this origin ---------------------------------------------------------
    // No usage reporting.
    telemetry: false,
    // No @font-face rules pointing at fonts.scalar.com; the system font stack is used.
    withDefaultFonts: false,
    // No request proxy: an empty string (rather than leaving it unset) also stops the
    // built-in fallback to proxy.scalar.com.
    proxyUrl: "",
    // No "Open API Client" button linking to client.scalar.com.
    hideClientButton: true,
    // No developer toolbar (its Share/Deploy actions upload the document to scalar.com);
    // by default it shows on localhost.
    showDeveloperTools: "never",
    // No "Ask AI" agent (api.scalar.com); by default it is on for localhost.
    agent: { disabled: true },
    // No "Generate MCP" actions (dashboard.scalar.com); by default shown on localhost.
    mcp: { disabled: true },
    // Tokens typed into "Try it" stay in memory, not in localStorage.
    persistAuth: false,

    // --- presentation -----------------------------------------------------------------------
    layout: "modern",
    theme: "default",
    showOperationId: true,
    documentDownloadType: "both",
    metaData: { title: "Parlor API reference" },
  });
})();
