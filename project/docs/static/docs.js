// Start Swagger UI on the API's own OpenAPI document (a file, not an inline script, so
// the Content-Security-Policy can forbid inline scripts).
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
  });
});
