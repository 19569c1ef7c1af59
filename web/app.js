// Shows whether the service is ready. Loaded as a module: the page has no inline script, so it
// runs under the strict Content-Security-Policy the service sends.
const status = document.getElementById("status");

async function showReadiness() {
  try {
    const response = await fetch("/readyz", { headers: { Accept: "application/json" } });
    status.textContent = response.ok ? "The service is ready." : "The service is not ready yet.";
    status.dataset.state = response.ok ? "ready" : "unavailable";
  } catch {
    status.textContent = "The service cannot be reached.";
    status.dataset.state = "unreachable";
  }
}

showReadiness();
