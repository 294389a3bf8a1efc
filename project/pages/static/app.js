// The page's behaviour: queue divide through the API, follow a task with long polls
// (GET /tasks/<id>?wait=…, answered as soon as it finishes), cancel unfinished tasks,
// refresh recent tasks with backoff, list users, show the API's field errors in place,
// and ask for an API token when the API answers 401.
"use strict";

const POLL_START_MS = 300;
const LONG_POLL_S = 5;
const OFFLINE_MAX_MS = 15000;
const IDLE_REFRESH_MS = 5000;
const FINAL_STATES = new Set(["SUCCESS", "FAILURE", "REVOKED"]);
const CANCELLABLE_STATES = new Set(["PENDING", "STARTED", "RETRY"]);

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- talking to the API ------------------------------------------------------------

class Unreachable extends Error {}

// The API token (API_AUTH=required), kept for this browser tab's session only: never in a
// cookie or the URL. Asked for once, when the API first answers 401.
const TOKEN_KEY = "apiToken";

// Fetch JSON; throw Unreachable when the backend (or a service behind it) is down.
// A 401 asks for a token, then sends the request again with it.
async function api(method, url, body) {
  for (;;) {
    const response = await send(method, url, body);
    if (response.status !== 401) return read(response);
    await askForToken(sessionStorage.getItem(TOKEN_KEY) !== null);
  }
}

async function send(method, url, body) {
  const headers = body === undefined ? {} : { "Content-Type": "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    return await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    setBackendReachable(false);
    throw new Unreachable(String(error));
  }
}

async function read(response) {
  if (response.status === 503 || response.status === 502 || response.status === 504) {
    setBackendReachable(false);
    throw new Unreachable(`HTTP ${response.status}`);
  }
  setBackendReachable(true);
  const data = response.status === 204 ? null : await response.json();
  return { status: response.status, data };
}

// One dialog for every request that met a 401: they all wait for the same token.
let tokenAnswer = null;

function askForToken(refused) {
  if (tokenAnswer) return tokenAnswer;
  const dialog = $("token-dialog");
  $("token-error").textContent = refused ? "That token was refused: it is unknown or revoked." : "";
  tokenAnswer = new Promise((resolve) => {
    const form = $("token-form");
    form.addEventListener("submit", function onSubmit(event) {
      event.preventDefault();
      const token = $("token-input").value.trim();
      if (!token) return;
      form.removeEventListener("submit", onSubmit);
      sessionStorage.setItem(TOKEN_KEY, token);
      form.reset();
      dialog.close();
      tokenAnswer = null;
      resolve();
    });
  });
  dialog.showModal();
  $("token-input").focus();
  return tokenAnswer;
}

function setBackendReachable(reachable) {
  const banner = $("backend-status");
  banner.hidden = reachable;
  banner.textContent = reachable ? "" : "The backend is unreachable; retrying…";
}

// --- tasks -------------------------------------------------------------------------

function describeOutcome(task) {
  if (task.state === "SUCCESS") return String(task.result);
  if (task.state === "REVOKED") return "cancelled";
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

// Task ids whose cancel request is in flight: their buttons stay disabled across refreshes.
const cancelling = new Set();

function cancelButton(taskId, describedBy) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "cancel";
  button.textContent = "Cancel";
  button.dataset.taskId = taskId;
  button.disabled = cancelling.has(taskId);
  // Named "Cancel"; the task's cell says which task (a screen reader reads both).
  button.setAttribute("aria-describedby", describedBy);
  return button;
}

function taskRow(task) {
  const row = document.createElement("tr");
  row.dataset.taskId = task.id;
  row.dataset.state = task.state;
  for (const text of [describeTask(task), task.state, describeOutcome(task), secondsTaken(task)]) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
  }
  row.cells[0].id = `task-${task.id}-name`;
  row.cells[1].className = `state state-${task.state.toLowerCase()}`;
  const actions = row.insertCell();
  if (CANCELLABLE_STATES.has(task.state)) actions.append(cancelButton(task.id, row.cells[0].id));
  return row;
}

// Re-rendering replaces the rows: keep the keyboard focus on the same task's button.
function keepingFocus(render) {
  const focused = document.activeElement;
  const onCancel = focused && focused.matches("#tasks-table button.cancel");
  const taskId = onCancel ? focused.dataset.taskId : null;
  render();
  if (taskId === null) return;
  const button = findTaskRow(taskId)?.querySelector("button.cancel");
  if (button) button.focus();
}

function findTaskRow(taskId) {
  return Array.from($("tasks-table").tBodies[0].rows).find((row) => row.dataset.taskId === taskId);
}

function renderTasks(tasks) {
  keepingFocus(() => $("tasks-table").tBodies[0].replaceChildren(...tasks.map(taskRow)));
  $("tasks-empty").hidden = tasks.length > 0;
}

// Show a task's new state wherever the page shows that task.
function updateTask(task) {
  const row = findTaskRow(task.id);
  if (row) keepingFocus(() => row.replaceWith(taskRow(task)));
  if (lastQueued && lastQueued.id === task.id) showTask(lastQueued.label, task);
}

// POST /tasks/<id>/cancel: 202 answers the cancelled task; 409 means it finished first,
// so show it as it is now. Other answers are shown in `errorSlot`.
async function cancelTask(taskId, errorSlot) {
  errorSlot.textContent = "";
  cancelling.add(taskId);
  setCancelDisabled(taskId, true);
  const url = `/tasks/${encodeURIComponent(taskId)}`;
  try {
    const { status, data } = await api("POST", `${url}/cancel`);
    if (status === 202) {
      updateTask(data);
    } else if (status === 409) {
      const current = await api("GET", url);
      if (current.status === 200) updateTask(current.data);
      else errorSlot.textContent = `Not cancelled: ${current.data.detail}`;
    } else {
      errorSlot.textContent = `Not cancelled: ${data.detail}`;
    }
  } catch (error) {
    if (!(error instanceof Unreachable)) throw error;
    errorSlot.textContent = "Not cancelled: the backend is unreachable. Try again shortly.";
  } finally {
    cancelling.delete(taskId);
    setCancelDisabled(taskId, false);
    wakeTasks();
  }
}

function setCancelDisabled(taskId, disabled) {
  const button = findTaskRow(taskId)?.querySelector("button.cancel");
  if (button) button.disabled = disabled;
  if (lastQueued && lastQueued.id === taskId) $("divide-cancel").disabled = disabled;
}

function onTasksClick(event) {
  const button = event.target.closest("button.cancel");
  if (button && !button.disabled) cancelTask(button.dataset.taskId, $("tasks-error"));
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

// The task the divide form queued last ({id, url, label}): its state is shown under the form.
let lastQueued = null;

function showTask(label, task) {
  const output = $("divide-status");
  output.textContent = `${label}: ${task.state}${task.state === "SUCCESS" ? ` = ${task.result}` : ""}`;
  if (task.state === "REVOKED") output.textContent += " (cancelled)";
  else if (task.error) output.textContent += ` (${task.error.type}: ${task.error.message})`;
  output.dataset.state = task.state;
  $("divide-cancel").hidden = !CANCELLABLE_STATES.has(task.state);
}

// The output stops showing the last task (its follower stops at its next answer).
function forgetLastQueued() {
  lastQueued = null;
  $("divide-cancel").hidden = true;
  $("divide-cancel-error").textContent = "";
}

function onDivideCancelClick() {
  if (lastQueued) cancelTask(lastQueued.id, $("divide-cancel-error"));
}

// Follow one task until it is final: each long poll returns as soon as the task finishes
// (or after LONG_POLL_S with its current state); back off only while unreachable. Stops
// once another task is queued, which is then the one shown.
async function followTask(url, label) {
  let offlineDelay = POLL_START_MS;
  for (;;) {
    try {
      const { status, data } = await api("GET", `${url}?wait=${LONG_POLL_S}`);
      if (!lastQueued || lastQueued.url !== url) return;
      if (status !== 200) {
        $("divide-cancel").hidden = true;
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
      forgetLastQueued();
      showFieldErrors(form, "divide", data.errors);
      output.textContent = data.errors ? "" : data.detail;
      return;
    }
    showFieldErrors(form, "divide", {});
    $("divide-cancel-error").textContent = "";
    lastQueued = { id: data.id, url: data.url, label: `${x} ÷ ${y}` };
    showTask(`${x} ÷ ${y}`, data);
    wakeTasks();
    await followTask(data.url, `${x} ÷ ${y}`);
  } catch (error) {
    if (!(error instanceof Unreachable)) throw error;
    forgetLastQueued();
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
  $("divide-cancel").addEventListener("click", onDivideCancelClick);
  $("tasks-table").addEventListener("click", onTasksClick);
  $("user-form").addEventListener("submit", submitUser);
  loadUsers();
  refreshTasksForever();
});
