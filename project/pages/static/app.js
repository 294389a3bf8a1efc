// The page's behaviour: queue divide through the API, follow a task with long polls
// (GET /tasks/<id>?wait=…, answered as soon as it finishes), refresh recent tasks with
// backoff, list users, and show the API's field errors in place.
"use strict";

const POLL_START_MS = 300;
const LONG_POLL_S = 5;
const OFFLINE_MAX_MS = 15000;
const IDLE_REFRESH_MS = 5000;
const FINAL_STATES = new Set(["SUCCESS", "FAILURE", "REVOKED"]);

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- talking to the API ------------------------------------------------------------

class Unreachable extends Error {}

// Fetch JSON; throw Unreachable when the backend (or a service behind it) is down.
async function api(method, url, body) {
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    setBackendReachable(false);
    throw new Unreachable(String(error));
  }
  if (response.status === 503 || response.status === 502 || response.status === 504) {
    setBackendReachable(false);
    throw new Unreachable(`HTTP ${response.status}`);
  }
  setBackendReachable(true);
  const data = response.status === 204 ? null : await response.json();
  return { status: response.status, data };
}

function setBackendReachable(reachable) {
  const banner = $("backend-status");
  banner.hidden = reachable;
  banner.textContent = reachable ? "" : "The backend is unreachable; retrying…";
}

// --- tasks -------------------------------------------------------------------------

function describeOutcome(task) {
  if (task.state === "SUCCESS") return String(task.result);
  if (task.error) return `${task.error.type}: ${task.error.message}`;
  return "";
}

function secondsTaken(task) {
  if (!task.finished_at) return "";
  const ms = Date.parse(task.finished_at) - Date.parse(task.created_at);
  return Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : "";
}

function describeTask(task) {
  const args = Array.isArray(task.args) ? task.args.join(", ") : "";
  return `${task.name}(${args})`;
}

function renderTasks(tasks) {
  const body = $("tasks-table").tBodies[0];
  const rows = tasks.map((task) => {
    const row = document.createElement("tr");
    row.dataset.taskId = task.id;
    row.dataset.state = task.state;
    for (const text of [describeTask(task), task.state, describeOutcome(task), secondsTaken(task)]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    row.cells[1].className = `state state-${task.state.toLowerCase()}`;
    return row;
  });
  body.replaceChildren(...rows);
  $("tasks-empty").hidden = tasks.length > 0;
}

// Refresh the recent tasks: often while some are unfinished, rarely when all are done,
// backing off while the backend is unreachable.
async function refreshTasksForever() {
  let offlineDelay = POLL_START_MS;
  for (;;) {
    let delay = IDLE_REFRESH_MS;
    try {
      const { status, data } = await api("GET", "/tasks/?limit=10");
      if (status === 200) {
        renderTasks(data.items);
        if (data.items.some((task) => !FINAL_STATES.has(task.state))) delay = 1000;
      }
      offlineDelay = POLL_START_MS;
    } catch (error) {
      if (!(error instanceof Unreachable)) throw error;
      offlineDelay = Math.min(offlineDelay * 2, OFFLINE_MAX_MS);
      delay = offlineDelay;
    }
    await Promise.race([sleep(delay), tasksChanged()]);
  }
}

let wakeTasks = () => {};
const tasksChanged = () => new Promise((resolve) => { wakeTasks = resolve; });

function showTask(label, task) {
  const output = $("divide-status");
  output.textContent = `${label}: ${task.state}${task.state === "SUCCESS" ? ` = ${task.result}` : ""}`;
  if (task.error) output.textContent += ` (${task.error.type}: ${task.error.message})`;
  output.dataset.state = task.state;
}

// Follow one task until it is final: each long poll returns as soon as the task finishes
// (or after LONG_POLL_S with its current state); back off only while unreachable.
async function followTask(url, label) {
  let offlineDelay = POLL_START_MS;
  for (;;) {
    try {
      const { status, data } = await api("GET", `${url}?wait=${LONG_POLL_S}`);
      if (status !== 200) {
        $("divide-status").textContent = `${label}: ${data.detail}`;
        return;
      }
      showTask(label, data);
      if (FINAL_STATES.has(data.state)) {
        wakeTasks();
        return;
      }
      offlineDelay = POLL_START_MS;
    } catch (error) {
      if (!(error instanceof Unreachable)) throw error;
      offlineDelay = Math.min(offlineDelay * 2, OFFLINE_MAX_MS);
      await sleep(offlineDelay);
    }
  }
}

// --- forms -------------------------------------------------------------------------

function showFieldErrors(form, prefix, errors) {
  for (const element of form.querySelectorAll(".field-error")) element.textContent = "";
  for (const input of form.querySelectorAll("input")) input.removeAttribute("aria-invalid");
  for (const [field, message] of Object.entries(errors || {})) {
    const slot = $(`${prefix}-${field}-error`);
    const input = $(`${prefix}-${field}`);
    if (slot) slot.textContent = `${field} ${message}`;
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", `${prefix}-${field}-error`);
    }
  }
}

// A number when the text is one; otherwise the text itself, for the API to reject by name.
function numberOrText(text) {
  const trimmed = text.trim();
  const value = Number(trimmed);
  return trimmed !== "" && Number.isFinite(value) ? value : trimmed;
}

async function submitDivide(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const x = numberOrText($("divide-x").value);
  const y = numberOrText($("divide-y").value);
  const output = $("divide-status");
  try {
    const { status, data } = await api("POST", "/tasks/divide", { x, y });
    if (status !== 202) {
      showFieldErrors(form, "divide", data.errors);
      output.textContent = data.errors ? "" : data.detail;
      return;
    }
    showFieldErrors(form, "divide", {});
    showTask(`${x} ÷ ${y}`, data);
    wakeTasks();
    await followTask(data.url, `${x} ÷ ${y}`);
  } catch (error) {
    if (!(error instanceof Unreachable)) throw error;
    output.textContent = "Not queued: the backend is unreachable. Try again shortly.";
  }
}

function renderUsers(users) {
  const items = users.map((user) => {
    const item = document.createElement("li");
    item.textContent = `${user.username} <${user.email}>`;
    return item;
  });
  $("users-list").replaceChildren(...items);
  $("users-empty").hidden = users.length > 0;
}

async function loadUsers() {
  try {
    const { status, data } = await api("GET", "/users/?limit=100");
    if (status === 200) renderUsers(data.items);
  } catch (error) {
    if (!(error instanceof Unreachable)) throw error;
  }
}

async function submitUser(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const formError = $("user-form-error");
  formError.textContent = "";
  const body = { username: $("user-username").value, email: $("user-email").value };
  try {
    const { status, data } = await api("POST", "/users/", body);
    if (status === 201) {
      showFieldErrors(form, "user", {});
      form.reset();
      await loadUsers();
      return;
    }
    showFieldErrors(form, "user", data.errors);
    if (!data.errors) formError.textContent = data.detail;
  } catch (error) {
    if (!(error instanceof Unreachable)) throw error;
    formError.textContent = "Not saved: the backend is unreachable. Try again shortly.";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("divide-form").addEventListener("submit", submitDivide);
  $("user-form").addEventListener("submit", submitUser);
  loadUsers();
  refreshTasksForever();
});
